namespace Bake.Core.Distributed

open System
open System.Runtime.InteropServices
open Bake.Core

/// <summary>The few MPI calls data-parallel training needs, by P/Invoke into Open MPI's <c>libmpi.so.40</c>
/// (docs/distributed.md). Nothing here is touched by a single-process run: the library is loaded by
/// <see cref="M:Bake.Core.Distributed.Mpi.Load"/> only, which <c>World</c> calls when the launcher says there is more
/// than one process.</summary>
/// <remarks>Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …) are not integers but the addresses of exported
/// globals (<c>ompi_mpi_comm_world</c>, …): the address itself is the handle value passed to the calls.</remarks>
[<RequireQualifiedAccess>]
module internal MpiNative =
    [<Literal>]
    let Library = "libmpi.so.40"

    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Init(nativeint argc, nativeint argv)
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Initialized(int& flag)
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Finalized(int& flag)
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Finalize()
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Abort(nativeint comm, int code)
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Comm_rank(nativeint comm, int& rank)
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Comm_size(nativeint comm, int& size)
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Barrier(nativeint comm)
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Bcast(nativeint buffer, int count, nativeint datatype, int root, nativeint comm)
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Allreduce(nativeint sendbuf, nativeint recvbuf, int count, nativeint datatype, nativeint op, nativeint comm)
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Allgather(nativeint sendbuf, int sendcount, nativeint sendtype, nativeint recvbuf, int recvcount, nativeint recvtype, nativeint comm)
    [<DllImport(Library, CallingConvention = CallingConvention.Cdecl)>]
    extern int MPI_Allgatherv(nativeint sendbuf, int sendcount, nativeint sendtype, nativeint recvbuf, int[] recvcounts, int[] displs, nativeint recvtype, nativeint comm)

/// <summary>An element type MPI moves.</summary>
[<RequireQualifiedAccess>]
type MpiType =
    | Float32
    | Float64
    | Int32
    | Int64

/// <summary>A reduction MPI applies.</summary>
[<RequireQualifiedAccess>]
type MpiOp =
    | Sum
    | Max
    | Min

/// <summary>MPI_COMM_WORLD of an initialised Open MPI: rank, size and the collectives on raw buffers. Every call is
/// collective: all ranks make the same calls in the same order (a mismatch hangs, as with any MPI program).</summary>
[<Sealed>]
type Mpi private (library: nativeint) =
    let export (name: string) =
        match NativeLibrary.TryGetExport(library, name) with
        | true, address -> address
        | _ -> raise (BakeException $"{MpiNative.Library} has no symbol {name}: Bake needs Open MPI 4 (Debian: apt-get install openmpi-bin libopenmpi3)")
    let world = export "ompi_mpi_comm_world"
    let types =
        dict [ MpiType.Float32, export "ompi_mpi_float"; MpiType.Float64, export "ompi_mpi_double"
               MpiType.Int32, export "ompi_mpi_int"; MpiType.Int64, export "ompi_mpi_long_long_int" ]
    let ops = dict [ MpiOp.Sum, export "ompi_mpi_op_sum"; MpiOp.Max, export "ompi_mpi_op_max"; MpiOp.Min, export "ompi_mpi_op_min" ]
    let check (call: string) (code: int) =
        if code <> 0 then raise (BakeException $"{call} failed with MPI error code {code}")
    let mutable rank = 0
    let mutable size = 1
    do
        let mutable initialised = 0
        check "MPI_Initialized" (MpiNative.MPI_Initialized &initialised)
        if initialised = 0 then check "MPI_Init" (MpiNative.MPI_Init(0n, 0n))
        check "MPI_Comm_rank" (MpiNative.MPI_Comm_rank(world, &rank))
        check "MPI_Comm_size" (MpiNative.MPI_Comm_size(world, &size))

    /// <summary>MPI_IN_PLACE in Open MPI.</summary>
    static member private InPlace = 1n

    /// <summary>Loads libmpi.so.40 and initialises MPI (once per process).</summary>
    /// <exception cref="T:Bake.Core.BakeException">Open MPI is not installed: the message names the Debian packages.</exception>
    static member Load() : Mpi = Mpi(Mpi.Require MpiNative.Library)

    /// <summary>Loads a library by name, or fails naming the packages that provide Open MPI.</summary>
    static member Require(name: string) : nativeint =
        match NativeLibrary.TryLoad name with
        | true, library -> library
        | _ ->
            raise (BakeException $"this run has more than one process but Open MPI's {name} cannot be loaded: install Open MPI 4 (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi3)")

    /// <summary>This process's rank in MPI_COMM_WORLD.</summary>
    member _.Rank = rank
    /// <summary>The number of processes.</summary>
    member _.Size = size

    /// <summary>Waits for every rank.</summary>
    member _.Barrier() = check "MPI_Barrier" (MpiNative.MPI_Barrier world)

    /// <summary>Reduces <paramref name="count"/> elements at <paramref name="buffer"/> over all ranks, in place.</summary>
    member _.AllReduce(buffer: nativeint, count: int, kind: MpiType, op: MpiOp) =
        check "MPI_Allreduce" (MpiNative.MPI_Allreduce(Mpi.InPlace, buffer, count, types[kind], ops[op], world))

    /// <summary>Copies <paramref name="count"/> elements from the root's buffer into every rank's.</summary>
    member _.Broadcast(buffer: nativeint, count: int, kind: MpiType, root: int) =
        check "MPI_Bcast" (MpiNative.MPI_Bcast(buffer, count, types[kind], root, world))

    /// <summary>Gathers <paramref name="count"/> elements of every rank, rank after rank, into <paramref name="received"/>
    /// (size × count elements).</summary>
    member _.AllGather(send: nativeint, count: int, received: nativeint, kind: MpiType) =
        check "MPI_Allgather" (MpiNative.MPI_Allgather(send, count, types[kind], received, count, types[kind], world))

    /// <summary>Gathers a varying number of elements per rank (<paramref name="counts"/>[r] from rank r), rank after
    /// rank, into <paramref name="received"/>.</summary>
    member _.AllGatherV(send: nativeint, count: int, received: nativeint, counts: int[], kind: MpiType) =
        let offsets = Array.scan (+) 0 counts |> Array.take counts.Length
        check "MPI_Allgatherv" (MpiNative.MPI_Allgatherv(send, count, types[kind], received, counts, offsets, types[kind], world))

    /// <summary>Ends every rank of the job with an exit code (a failing rank would leave the others waiting).</summary>
    member _.Abort(code: int) = MpiNative.MPI_Abort(world, code) |> ignore

    /// <summary>MPI_Finalize, unless already done.</summary>
    member _.Shutdown() =
        let mutable finalised = 0
        MpiNative.MPI_Finalized &finalised |> ignore
        if finalised = 0 then check "MPI_Finalize" (MpiNative.MPI_Finalize())
