namespace Mistral.Peft; /// <summary>x</summary>
public static class Placeholder {}
