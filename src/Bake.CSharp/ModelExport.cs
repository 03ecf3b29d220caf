using System;
using Microsoft.FSharp.Core;
using Core = Bake.Core;

namespace Bake;

/// <summary>Exports a trained checkpoint for use outside Bake: as an ONNX model for ONNX Runtime, or as weights for
/// PyTorch.</summary>
public static class ModelExport
{
    /// <summary>Writes a checkpoint's eval-mode graph as an ONNX model (opset 17, dynamic batch dimension), atomically.
    /// Its input <c>images</c> is N×C×H×W float32 normalised as in evaluation; its output <c>logits</c> is N×K (and
    /// <c>features</c> N×D when asked for). The class names, the input shape, the mean and the std are in the
    /// model's metadata under the keys <c>bake.classes</c>, <c>bake.input_shape</c>, <c>bake.mean</c>,
    /// <c>bake.std</c> (JSON values).</summary>
    /// <param name="checkpoint">A checkpoint folder (holding state.json) or a run directory (its last checkpoint).</param>
    /// <param name="outputPath">The .onnx file to write.</param>
    /// <param name="includeFeatures">Also output the pooled penultimate features.</param>
    /// <returns>The full path written.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="Core.UsageException">The output path does not end in .onnx.</exception>
    /// <exception cref="Core.BakeException">No checkpoint there, or the file cannot be written; the message names it.</exception>
    public static string ToOnnx(string checkpoint, string outputPath, bool includeFeatures = false)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(outputPath);
        return Core.Checkpoints.Export(checkpoint, "onnx", FSharpOption<string>.Some(outputPath), includeFeatures).Item1;
    }

    /// <summary>Writes a checkpoint's weights (a state dict with torchvision's parameter names), atomically.</summary>
    /// <param name="checkpoint">A checkpoint folder or a run directory (its last checkpoint).</param>
    /// <param name="outputPath">The file to write: .safetensors, or .pth/.pt for a <c>torch.save</c> state dict.</param>
    /// <returns>The full path written.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="Core.UsageException">An extension other than .safetensors, .pth or .pt.</exception>
    /// <exception cref="Core.BakeException">No checkpoint there, or the file cannot be written.</exception>
    public static string ToWeights(string checkpoint, string outputPath)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(outputPath);
        var extension = System.IO.Path.GetExtension(outputPath).ToLowerInvariant();
        var format = extension == ".safetensors" ? "safetensors" : "pth";
        return Core.Checkpoints.Export(checkpoint, format, FSharpOption<string>.Some(outputPath), false).Item1;
    }
}
