namespace Bake.Core

open System
open TorchSharp

/// <summary>Small helpers shared by the core: dispose scopes, shape descriptions and checks.</summary>
/// <remarks>Ownership rule for the whole core (docs/architecture.md, "Tensor memory"): every function returns a fresh tensor,
/// never disposes or mutates its inputs, and frees its temporaries in a dispose scope.</remarks>
[<RequireQualifiedAccess>]
module Tensors =

    /// <summary>Runs <paramref name="compute"/> in a new dispose scope; every temporary it creates is
    /// disposed, and the tensor it returns is moved to the caller's scope.</summary>
    /// <remarks>The returned tensor must be fresh (never one of the caller's inputs); use <c>alias()</c>.</remarks>
    [<CompiledName("Scoped")>]
    let scoped (compute: unit -> torch.Tensor) : torch.Tensor =
        use scope = torch.NewDisposeScope()
        let result = compute ()
        result.MoveToOuterDisposeScope()

    /// <summary>A shape as people write it, e.g. <c>[32×10]</c>.</summary>
    [<CompiledName("Describe")>]
    let describe (tensor: torch.Tensor) : string =
        "[" + (tensor.shape |> Array.map string |> String.concat "×") + "]"

    /// <summary>Throws <see cref="T:System.ArgumentException"/> unless <paramref name="tensor"/> has rank 2.</summary>
    [<CompiledName("RequireMatrix")>]
    let requireMatrix (name: string) (tensor: torch.Tensor) : unit =
        if isNull tensor then nullArg name
        if tensor.dim () <> 2L then
            invalidArg name $"{name} must be a matrix (rows = samples), got shape {describe tensor}"

    /// <summary>Throws unless both matrices have the same number of rows (one row per sample).</summary>
    [<CompiledName("RequireSameRows")>]
    let requireSameRows (nameA: string, a: torch.Tensor) (nameB: string, b: torch.Tensor) : unit =
        if a.shape[0] <> b.shape[0] then
            invalidArg nameB
                $"{nameA} {describe a} and {nameB} {describe b} must have one row per sample (same first dimension)"

    /// <summary>Throws unless <paramref name="labels"/> is an int64 vector of class indices in [0, classes)
    /// with one entry per row of the logits.</summary>
    [<CompiledName("RequireLabels")>]
    let requireLabels (labels: torch.Tensor) (logits: torch.Tensor) : unit =
        if isNull labels then nullArg "labels"
        if labels.dim () <> 1L || labels.dtype <> torch.int64 then
            invalidArg "labels" $"labels must be an int64 vector, got {labels.dtype} {describe labels}"
        if labels.shape[0] <> logits.shape[0] then
            invalidArg "labels" $"labels {describe labels} must have one entry per row of logits {describe logits}"
        if labels.numel () > 0L then
            use lowest = labels.min ()
            use highest = labels.max ()
            let lo, hi = lowest.item<int64> (), highest.item<int64> ()
            let classes = logits.shape[1]
            if lo < 0L || hi >= classes then
                invalidArg "labels" $"labels must lie in [0, {classes}) for logits {describe logits}, got values in [{lo}, {hi}]"

    /// <summary>The most distinct values <see cref="M:Bake.Core.Tensors.Scalar(System.Double)"/> keeps alive.</summary>
    [<Literal>]
    let ScalarCacheSize = 65536

    let private scalars = Collections.Concurrent.ConcurrentDictionary<float, Scalar>()

    /// <summary>A TorchSharp scalar from a float (F# does not apply the implicit conversion in overloads), kept
    /// alive for the process: the same object for the same value (up to <c>ScalarCacheSize</c> values, beyond which
    /// a fresh one is made).</summary>
    /// <remarks>Why cached: a Scalar passed straight to an op is unreachable once its handle is read, so a garbage
    /// collection started by another thread (the loader's workers allocate) can finalize it — freeing the native
    /// scalar — while libtorch is still reading it inside the call; libtorch then fails with "Unknown scalar type"
    /// (seen once in a 10,000-iteration run, docs/reliability.md). A cached Scalar is never finalized. The caller
    /// must not dispose it.</remarks>
    [<CompiledName("Scalar")>]
    let scalar (value: float) : Scalar =
        match scalars.TryGetValue value with
        | true, cached -> cached
        | _ when scalars.Count >= ScalarCacheSize -> value.ToScalar()
        | _ -> scalars.GetOrAdd(value, fun v -> v.ToScalar())

    /// <summary>Formats a floating-point value for messages with invariant culture.</summary>
    let internal fmt (value: float) = value.ToString("R", Globalization.CultureInfo.InvariantCulture)
