namespace Bake.Core.Distributed

#nowarn "9" // the address of a tensor's memory for MPI (World.Address)

open System
open System.Runtime.InteropServices
open TorchSharp
open Bake.Core

/// <summary>The processes of a run: one (no MPI at all) or the ranks an MPI launcher started (<c>mpirun -np K</c>),
/// with collectives on tensors. <see cref="P:Bake.Core.Distributed.World.Current"/> is the process's world: MPI is
/// loaded and initialised only when the launcher's environment says there is more than one process.</summary>
/// <remarks>Every collective must be called by all ranks in the same order. Tensors are moved through CPU memory: a
/// tensor on another device is copied to the CPU and back (CUDA-aware MPI would take device buffers directly, see
/// docs/distributed.md).</remarks>
[<Sealed>]
type World private (mpi: Mpi option) =

    static let launched () =
        [ "OMPI_COMM_WORLD_SIZE"; "PMI_SIZE" ]
        |> List.tryPick (fun name ->
            match Int32.TryParse(Environment.GetEnvironmentVariable name) with
            | true, n when n > 0 -> Some n
            | _ -> None)
        |> Option.defaultValue 1

    static let current = lazy (if launched () > 1 then World(Some(Mpi.Load())) else World None)

    /// <summary>The process count the launcher announces: Open MPI's OMPI_COMM_WORLD_SIZE or the PMI_SIZE of
    /// Hydra/Slurm launchers; 1 when neither is set.</summary>
    static member LaunchedProcesses() : int = launched ()

    /// <summary>A world of this process alone (every collective is the identity).</summary>
    static member Single: World = World None

    /// <summary>This process's world: the MPI job it was launched in, or a single process. MPI_Init runs on the first
    /// use, and only when there is more than one process.</summary>
    static member Current: World = current.Force()

    /// <summary>Whether <see cref="P:Bake.Core.Distributed.World.Current"/> was already created (so MPI may be
    /// initialised and must be finalised).</summary>
    static member IsCreated = current.IsValueCreated

    /// <summary>This process's rank (0 for a single process).</summary>
    member _.Rank = match mpi with Some m -> m.Rank | None -> 0
    /// <summary>The number of processes.</summary>
    member _.Size = match mpi with Some m -> m.Size | None -> 1
    /// <summary>Rank 0: the one process that writes the run directory and prints.</summary>
    member this.IsRoot = this.Rank = 0
    /// <summary>More than one process.</summary>
    member this.IsDistributed = this.Size > 1

    static member private TypeOf(t: torch.Tensor) =
        match t.dtype with
        | torch.ScalarType.Float32 -> MpiType.Float32
        | torch.ScalarType.Float64 -> MpiType.Float64
        | torch.ScalarType.Int32 -> MpiType.Int32
        | torch.ScalarType.Int64 -> MpiType.Int64
        | other -> invalidArg "tensor" $"MPI collectives take float32, float64, int32 or int64 tensors, not {other}"

    /// <summary>The address of a contiguous CPU tensor's first element (libtorch's memory does not move).</summary>
    static member private Address(t: torch.Tensor) : nativeint =
        if t.device_type <> DeviceType.CPU then invalidArg "tensor" "MPI buffers must be CPU tensors"
        if not (t.is_contiguous ()) then invalidArg "tensor" "MPI buffers must be contiguous"
        if t.numel () = 0L then 0n
        else
            // A CPU tensor's bytes are a span over libtorch's own (unmoving) memory: its address is the buffer's.
            let bytes = t.bytes
            use pointer = fixed &MemoryMarshal.GetReference(bytes)
            NativeInterop.NativePtr.toNativeInt pointer

    static member private Count(t: torch.Tensor) =
        if t.numel () > int64 Int32.MaxValue then invalidArg "tensor" $"MPI counts are 32-bit: {t.numel ()} elements is too many for one call"
        int (t.numel ())

    /// <summary>Runs an in-place collective on a tensor: directly on a contiguous CPU tensor, else on a CPU copy
    /// that is copied back.</summary>
    static member private InPlace(t: torch.Tensor, collective: torch.Tensor -> unit) =
        if t.device_type = DeviceType.CPU && t.is_contiguous () then collective t
        else
            use staging = t.detach().cpu().contiguous().clone ()
            collective staging
            use _ = torch.no_grad ()
            t.copy_ staging |> ignore

    /// <summary>Reduces a tensor over all ranks in place (MPI_Allreduce): afterwards every rank holds the sum (or
    /// max, min) of all ranks' values.</summary>
    member _.AllReduce(tensor: torch.Tensor, op: MpiOp) : unit =
        match mpi with
        | None -> ()
        | Some m -> World.InPlace(tensor, fun t -> m.AllReduce(World.Address t, World.Count t, World.TypeOf t, op))

    /// <summary>Sums a tensor over all ranks in place.</summary>
    member this.AllReduceSum(tensor: torch.Tensor) : unit = this.AllReduce(tensor, MpiOp.Sum)

    /// <summary>Overwrites a tensor on every rank with the root's (MPI_Bcast).</summary>
    member _.Broadcast(tensor: torch.Tensor, root: int) : unit =
        match mpi with
        | None -> ()
        | Some m -> World.InPlace(tensor, fun t -> m.Broadcast(World.Address t, World.Count t, World.TypeOf t, root))

    /// <summary>The rows of every rank's tensor, rank after rank (MPI_Allgatherv): ranks may hold different numbers
    /// of rows, the other dimensions must agree. Returns a fresh tensor on the input's device, without autograd
    /// history; with one process, a detached copy.</summary>
    member _.AllGather(tensor: torch.Tensor) : torch.Tensor =
        match mpi with
        | None -> tensor.detach().clone ()
        | Some m ->
            use _ = torch.no_grad ()
            use local = tensor.detach().cpu().contiguous ()
            let rowSize = if local.dim () = 0L then 1L else local.shape |> Array.skip 1 |> Array.fold (*) 1L
            use counts = torch.zeros ([| int64 m.Size |], dtype = torch.int64)
            counts[int64 m.Rank] <- torch.tensor (local.shape[0], dtype = torch.int64)
            m.AllReduce(World.Address counts, m.Size, MpiType.Int64, MpiOp.Sum)
            let rows = counts.data<int64>().ToArray()
            let shape = Array.append [| Array.sum rows |] (Array.skip 1 local.shape)
            let gathered = torch.empty (shape, dtype = local.dtype)
            let elements = rows |> Array.map (fun r -> int (r * rowSize))
            m.AllGatherV(World.Address local, World.Count local, World.Address gathered, elements, World.TypeOf local)
            if tensor.device_type = DeviceType.CPU then gathered
            else
                use onCpu = gathered
                onCpu.``to`` tensor.device

    /// <summary>Waits until every rank arrives.</summary>
    member _.Barrier() : unit = mpi |> Option.iter (fun m -> m.Barrier())

    /// <summary>True on every rank when the condition holds on any rank (one small all-reduce): ranks agree on
    /// stopping (a cancellation seen by one rank only would leave the others waiting in the next collective).</summary>
    member _.Any(condition: bool) : bool =
        match mpi with
        | None -> condition
        | Some m ->
            use flag = torch.tensor ([| (if condition then 1 else 0) |], dtype = torch.int32)
            m.AllReduce(World.Address flag, 1, MpiType.Int32, MpiOp.Max)
            flag.item<int> () <> 0

    /// <summary>Ends the process with an exit code. In an MPI job: MPI_Finalize when the code is 0; otherwise
    /// MPI_Abort, which ends every rank (the others may be waiting in a collective for this one).</summary>
    member _.Exit(code: int) : int =
        match mpi with
        | Some m when code <> 0 ->
            // MPI_Abort ends every rank at once, and with them mpirun's forwarding of their output: give the message
            // this rank just printed time to reach mpirun first.
            Console.Out.Flush()
            Console.Error.Flush()
            Threading.Thread.Sleep 500
            m.Abort code
            code
        | Some m -> m.Shutdown(); code
        | None -> code
