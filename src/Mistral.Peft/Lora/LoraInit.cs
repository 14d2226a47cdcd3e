namespace Mistral.Peft.Lora;

/// <summary>How the LoRA matrices A [r, in] and B [out, r] are initialised (PEFT's <c>init_lora_weights</c>).</summary>
public enum LoraInit
{
    /// <summary>
    /// PEFT's default (<c>init_lora_weights=true</c>): A from <c>kaiming_uniform_(a=√5)</c>, i.e. U(±bound) with
    /// bound = gain·√(3/in) and gain = √(2/(1+a²)), which is U(±1/√in); B zeros, so the adapter starts as a no-op.
    /// </summary>
    KaimingUniform,

    /// <summary>PEFT's <c>"gaussian"</c>: A ~ N(0, σ = 1/r) (standard deviation 1/r, as PEFT's <c>normal_(std=1/r)</c>); B zeros.</summary>
    Gaussian,

    /// <summary>
    /// PEFT's <c>init_lora_weights=false</c>: A and B both keep <c>nn.Linear</c>'s default, kaiming-uniform with a=√5
    /// over their own fan-in (A: U(±1/√in), B: U(±1/√r)), so the adapter is not a no-op. Meant for tests.
    /// </summary>
    LinearDefault,
}
