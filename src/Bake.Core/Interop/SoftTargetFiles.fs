namespace Bake.Core.Interop

open System.IO
open TorchSharp
open Bake.Core

/// <summary>BAKE soft targets for embeddings and logits produced anywhere (PyTorch, JAX, another .NET model):
/// matrix files in, matrix file out (what <c>bake targets</c> runs).</summary>
[<RequireQualifiedAccess>]
module SoftTargetFiles =

    /// <summary>Throws a <see cref="T:Bake.Core.BakeException"/> naming the file unless the matrix has at least one
    /// row and one column and only finite values.</summary>
    let private requireUsable (what: string) (path: string) (matrix: torch.Tensor) =
        let full = Path.GetFullPath path
        if matrix.shape[0] = 0L || matrix.shape[1] = 0L then
            raise (BakeException $"{full}: the {what} matrix {Tensors.describe matrix} is empty: expected at least one row (sample) and one column")
        use _ = torch.no_grad ()
        use bad = torch.isfinite(matrix).logical_not().nonzero ()
        if bad.shape[0] > 0L then
            let row, column = bad[0L, 0L].item<int64> (), bad[0L, 1L].item<int64> ()
            use value = matrix[row, column].to_type torch.float64
            raise (BakeException
                $"{full}: the {what} hold a non-finite value {Tensors.fmt (value.item<float> ())} at sample {row + 1L}, column {column + 1L} (1-based; {bad.shape[0]} such values): expected finite numbers")

    /// <summary>Reads features (N×D) and logits (N×K) from CSV or <c>.npy</c> files, computes the BAKE soft targets
    /// Q (N×K) with <see cref="M:Bake.Core.Propagation.SoftTargets(TorchSharp.torch.Tensor,TorchSharp.torch.Tensor,Bake.Core.BakeOptions)"/>,
    /// treating the N rows as one batch, and writes Q atomically to <paramref name="outPath"/>; the format of every
    /// file follows its extension.</summary>
    /// <remarks>The affinity is N×N, so memory and time grow with N² (closed form: an N×N solve). Q is float64
    /// when the logits are float64 (always for CSV) and float32 when they are float32 (a float32 <c>.npy</c>).
    /// Extensions and options are checked before any file is read, so a typo costs nothing; the output is
    /// written only when everything succeeded.</remarks>
    /// <param name="featuresPath">F(x), one row per sample (<c>.csv</c> or <c>.npy</c>).</param>
    /// <param name="logitsPath">z, one row per sample, one column per class.</param>
    /// <param name="options">τ, ω and the propagation form (λ is not used).</param>
    /// <param name="outPath">Where Q goes (<c>.csv</c> or <c>.npy</c>).</param>
    /// <returns>Q, a fresh N×K tensor on the CPU (the caller disposes it).</returns>
    /// <exception cref="T:Bake.Core.UsageException">Invalid options (e.g. ω = 1) or an extension other than
    /// <c>.csv</c>/<c>.npy</c>.</exception>
    /// <exception cref="T:Bake.Core.BakeException">A missing or malformed file, an empty matrix, a non-finite value,
    /// different row counts in the two files, or an unwritable output.</exception>
    [<CompiledName("Compute")>]
    let compute (featuresPath: string, logitsPath: string, options: BakeOptions, outPath: string) : torch.Tensor =
        match Validate.bake options with
        | Error problems -> raise (UsageException("invalid BAKE options: " + String.concat "; " problems))
        | Ok _ -> ()
        for path in [ featuresPath; logitsPath; outPath ] do
            MatrixFiles.formatOf path |> ignore
        Tensors.scoped (fun () ->
            let features = MatrixFiles.read featuresPath
            requireUsable "features" featuresPath features
            let logits = MatrixFiles.read logitsPath
            requireUsable "logits" logitsPath logits
            if features.shape[0] <> logits.shape[0] then
                raise (BakeException
                    $"{Path.GetFullPath featuresPath} has {features.shape[0]} rows (features {Tensors.describe features}) but {Path.GetFullPath logitsPath} has {logits.shape[0]} (logits {Tensors.describe logits}): expected one row per sample in both, in the same order")
            let targets = Propagation.softTargets (features, logits, options)
            MatrixFiles.write (outPath, targets)
            targets)
