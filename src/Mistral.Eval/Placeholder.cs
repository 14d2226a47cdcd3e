namespace Mistral.Eval; /// <summary>x</summary>
public static class Placeholder {}
