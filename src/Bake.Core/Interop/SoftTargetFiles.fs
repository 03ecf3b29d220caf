namespace Bake.Core.Interop

open System
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

    /// <summary>The bytes one batch of <paramref name="rows"/> rows needs at its peak: the N×N affinity, its row
    /// softmax, I − ωÂ and the solve's factorisation (about five N×N matrices; measured: 10,000 float64 rows peak at
    /// 4.1 GB), in the logits' precision.</summary>
    /// <param name="rows">N, the rows of one batch.</param>
    /// <param name="elementBytes">4 (float32) or 8 (float64).</param>
    [<CompiledName("PeakBytes")>]
    let peakBytes (rows: int64, elementBytes: int) : int64 = 5L * rows * rows * int64 elementBytes

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
    /// <param name="batchRows">Rows per batch (consecutive; the last may be shorter), or None for one batch of all rows.</param>
    /// <param name="memoryLimitBytes">The peak a batch may need (see <see cref="M:Bake.Core.Interop.SoftTargetFiles.DefaultMemoryLimit"/>).</param>
    /// <exception cref="T:Bake.Core.UsageException">Invalid options (e.g. ω = 1), an extension other than
    /// <c>.csv</c>/<c>.npy</c>, or a batch that would not fit in memory (refused with the figure before it is allocated).</exception>
    /// <exception cref="T:Bake.Core.BakeException">A missing or malformed file, an empty matrix, a non-finite value,
    /// different row counts in the two files, or an unwritable output.</exception>
    [<CompiledName("ComputeBatched")>]
    let computeBatched (featuresPath: string, logitsPath: string, options: BakeOptions, outPath: string, batchRows: int option, memoryLimitBytes: int64) : torch.Tensor =
        match batchRows with
        | Some b when b < 1 -> raise (UsageException($"batch {b}: expected at least 1 row per batch", "batch"))
        | _ -> ()
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
            let rows = logits.shape[0]
            let batch = batchRows |> Option.map int64 |> Option.defaultValue rows |> min rows
            let needed = peakBytes (batch, int (logits.ElementSize))
            if needed > memoryLimitBytes then
                let gb (bytes: int64) = (float bytes / 1e9).ToString("F1", Globalization.CultureInfo.InvariantCulture)
                let hint = if batchRows.IsNone then ": cut the rows into batches (as training computes targets within each batch)" else ": use smaller batches"
                raise (UsageException($"{rows} rows as batches of {batch} need about {gb needed} GB for each {batch}×{batch} affinity and its solve, more than the {gb memoryLimitBytes} GB available{hint}", "batch"))
            let targets =
                if batch = rows then Propagation.softTargets (features, logits, options)
                else
                    let parts =
                        [| for start in 0L .. batch .. rows - 1L ->
                               let n = min batch (rows - start)
                               Propagation.softTargets (features.narrow (0L, start, n), logits.narrow (0L, start, n), options) |]
                    torch.cat (parts, 0L)
            MatrixFiles.write (outPath, targets)
            targets)

    /// <summary>The memory a batch may use: half of what the machine (or the container's limit) makes available.</summary>
    [<CompiledName("DefaultMemoryLimit")>]
    let defaultMemoryLimit () : int64 = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 2L

    /// <summary>The soft targets of all rows as one batch, refused when they would not fit in
    /// <see cref="M:Bake.Core.Interop.SoftTargetFiles.DefaultMemoryLimit"/>.</summary>
    [<CompiledName("Compute")>]
    let compute (featuresPath: string, logitsPath: string, options: BakeOptions, outPath: string) : torch.Tensor =
        computeBatched (featuresPath, logitsPath, options, outPath, None, defaultMemoryLimit ())
