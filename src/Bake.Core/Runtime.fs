namespace Bake.Core

open System
open System.Runtime
open System.Runtime.InteropServices

/// <summary>Process-wide settings of the native runtime, applied by programs before their first torch call.</summary>
[<RequireQualifiedAccess>]
module Runtime =

    [<DllImport("libc", EntryPoint = "setenv")>]
    extern int private setenv(string name, string value, int overwrite)

    /// <summary>Sets OMP_WAIT_POLICY=PASSIVE in the native environment unless the user set it. OpenMP reads it
    /// when libtorch starts, so call this before any torch call. Why: with the default (active) waiting, small
    /// libtorch ops stall in 4 ms steps while another process or thread uses the CPU (docs/architecture.md, "Environment"); on a
    /// dedicated machine set OMP_WAIT_POLICY=ACTIVE yourself if you prefer spinning.</summary>
    [<CompiledName("UsePassiveOpenMpWait")>]
    let usePassiveOpenMpWait () : unit =
        if RuntimeInformation.IsOSPlatform OSPlatform.Linux && String.IsNullOrEmpty(Environment.GetEnvironmentVariable "OMP_WAIT_POLICY") then
            setenv ("OMP_WAIT_POLICY", "PASSIVE", 0) |> ignore

    /// <summary>The share of the CPU time of all cores that other work used over a short window (/proc/stat, 50 ms;
    /// None where it cannot be read). A load average would lag: right after another training process ends it still
    /// reads as busy.</summary>
    let private busyShare () =
        let sample () =
            let fields = (IO.File.ReadLines "/proc/stat" |> Seq.head).Split(' ', StringSplitOptions.RemoveEmptyEntries)
            let values = fields |> Array.skip 1 |> Array.truncate 8 |> Array.map int64
            // idle + iowait, total
            values[3] + values[4], Array.sum values
        try
            let idle0, total0 = sample ()
            Threading.Thread.Sleep 50
            let idle1, total1 = sample ()
            if total1 > total0 then Some(1.0 - float (idle1 - idle0) / float (total1 - total0)) else None
        with _ -> None

    /// <summary>What the <c>bake</c> program does before its first torch call: OMP_WAIT_POLICY=PASSIVE (see
    /// <see cref="M:Bake.Core.Runtime.UsePassiveOpenMpWait"/>) only when other work already keeps at least half of the
    /// CPU busy, else OpenMP's default short spin, which keeps libtorch's threads awake between the many small ops of a
    /// training step, as in PyTorch (faster on an idle machine: docs/performance.md). A value the user set is kept.</summary>
    /// <returns>True when passive waiting was chosen (or already set by the user).</returns>
    [<CompiledName("UsePassiveOpenMpWaitWhenBusy")>]
    let usePassiveOpenMpWaitWhenBusy () : bool =
        match Environment.GetEnvironmentVariable "OMP_WAIT_POLICY" with
        | null | "" ->
            match busyShare () with
            | Some busy when busy >= 0.5 ->
                usePassiveOpenMpWait ()
                true
            | _ -> false
        | policy -> policy.Trim().ToUpperInvariant() = "PASSIVE"

    /// <summary>The managed allocation budget of <see cref="M:Bake.Core.Runtime.WithoutCollections"/> (all threads).</summary>
    [<Literal>]
    let StepAllocationBudget = 64L * 1024L * 1024L

    /// Guards the process-wide no-GC region shared by every step in flight (see withoutCollections).
    let private regionGate = obj ()
    let mutable private actionsInFlight = 0
    let mutable private regionOwned = false

    /// <summary>Runs <paramref name="action"/> with garbage collection held off (a no-GC region of
    /// <c>StepAllocationBudget</c> bytes, the whole process): the training step, because TorchSharp makes Scalars on
    /// the fly inside its own modules (BatchNorm's <c>num_batches_tracked.add_(1)</c> in every training forward, the
    /// optimizer's step sizes), and a collection started meanwhile by another thread (the loader's workers allocate)
    /// may finalize such a Scalar while libtorch still reads it: "Unknown scalar type", about once in a few thousand
    /// iterations under load (docs/reliability.md). The region is the process's, so calls in flight at once (nested,
    /// or two trainings on parallel threads) share one: the first to enter starts it, the last to leave ends it.
    /// Allocation beyond the budget ends the region early (a collection happens as it would have), and a failure to
    /// start one runs the action plainly; a region someone else started is left alone.</summary>
    [<CompiledName("WithoutCollections")>]
    let withoutCollections (action: unit -> 'T) : 'T =
        lock regionGate (fun () ->
            actionsInFlight <- actionsInFlight + 1
            if actionsInFlight = 1 then
                regionOwned <-
                    GCSettings.LatencyMode <> GCLatencyMode.NoGCRegion
                    && (try GC.TryStartNoGCRegion StepAllocationBudget with :? ArgumentOutOfRangeException | :? InvalidOperationException -> false))
        try action ()
        finally
            lock regionGate (fun () ->
                actionsInFlight <- actionsInFlight - 1
                if actionsInFlight = 0 && regionOwned then
                    regionOwned <- false
                    if GCSettings.LatencyMode = GCLatencyMode.NoGCRegion then
                        try GC.EndNoGCRegion() with :? InvalidOperationException -> ())

    [<DllImport("libc", EntryPoint = "mallopt")>]
    extern int private mallopt(int parameter, int value)

    [<DllImport("libc", EntryPoint = "malloc_trim")>]
    extern int private malloc_trim(unativeint pad)

    let mutable private allocatorTuned = false

    /// <summary>Makes glibc's malloc keep the memory libtorch frees for reuse instead of returning it to the system
    /// after every step: a fixed 32 MB mmap threshold (tensors up to that size come from the heap, not from fresh
    /// mmaps) and a 256 MB trim threshold (<c>mallopt</c> M_MMAP_THRESHOLD and M_TRIM_THRESHOLD). Without it each
    /// training step of the default job page-faulted ~15,000 times on freshly mapped memory (1.8 million minor faults and
    /// 4 s of system time per epoch; 0.15 million and 0.5 s with it; docs/performance.md). Idempotent; Linux with glibc
    /// only; skipped when the user set MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_.</summary>
    [<CompiledName("KeepFreedMemory")>]
    let keepFreedMemory () : unit =
        if not allocatorTuned then
            allocatorTuned <- true
            let userSet name = not (String.IsNullOrEmpty(Environment.GetEnvironmentVariable name))
            if RuntimeInformation.IsOSPlatform OSPlatform.Linux && not (userSet "MALLOC_MMAP_THRESHOLD_" || userSet "MALLOC_TRIM_THRESHOLD_") then
                try
                    // M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3 (malloc.h).
                    mallopt (-3, 32 * 1024 * 1024) |> ignore
                    mallopt (-1, 256 * 1024 * 1024) |> ignore
                with :? EntryPointNotFoundException | :? DllNotFoundException -> () // not glibc (e.g. musl): nothing to tune

    /// <summary>Returns the memory malloc keeps for reuse (<see cref="M:Bake.Core.Runtime.KeepFreedMemory"/>) to the
    /// system (<c>malloc_trim</c>), at a change of phase whose tensors have other sizes (training to evaluation and
    /// back): what one phase kept would not serve the other, and both would stay resident (the 3×32 JPEG job's peak
    /// was 1,069 MB with evaluation at batch 500, 774 MB at batch 100; docs/performance.md). A few milliseconds; does
    /// nothing where the allocator was not tuned.</summary>
    [<CompiledName("ReleaseFreedMemory")>]
    let releaseFreedMemory () : unit =
        if allocatorTuned then
            try malloc_trim 0un |> ignore
            with :? EntryPointNotFoundException | :? DllNotFoundException -> ()

