namespace Mistral.Core; /// <summary>x</summary>
public static class Placeholder {}
