namespace Bake.Core.Data

open System
open System.IO
open System.IO.Compression
open TorchSharp
open Bake.Core

/// <summary>One split of a dataset (train or test): its labels, and its images decoded on demand by index.</summary>
/// <remarks>Implementations are thread-safe: the loader calls <c>Load</c> from several workers at once.</remarks>
type ISplit =
    /// <summary>The number of images.</summary>
    abstract Count: int
    /// <summary>The class index of every image, in [0, classes). The caller must not modify the array.</summary>
    abstract Labels: int[]
    /// <summary>The images at <paramref name="indices"/> (repeats allowed), as a fresh uint8 tensor N×C×H×W that the
    /// caller owns and disposes.</summary>
    abstract Load: indices: int[] -> torch.Tensor

/// <summary>A split whose images also carry a second, coarser label (CIFAR-100's 20 superclasses).</summary>
type ICoarseLabelled =
    /// <summary>The coarse class of every image, in [0, CoarseClasses.Length).</summary>
    abstract CoarseLabels: int[]
    /// <summary>The coarse class names.</summary>
    abstract CoarseClasses: string[]

/// <summary>A dataset: two splits of images of one shape, with class names and the training split's per-channel
/// statistics.</summary>
[<NoComparison; NoEquality>]
type Dataset =
    {
        /// <summary>A short name, e.g. "fashion-mnist-subset" or the folder's name.</summary>
        Name: string
        /// <summary>Where it was read from and in which layout, e.g. "idx: /data/fashion-mnist".</summary>
        Source: string
        /// <summary>The class names; label c is named Classes[c].</summary>
        Classes: string[]
        /// <summary>C; H; W of every image as the splits return them.</summary>
        ImageShape: int[]
        /// <summary>The training split.</summary>
        Train: ISplit
        /// <summary>The test (or validation) split.</summary>
        Test: ISplit
        /// <summary>The per-channel mean of the training images in [0, 1] units.</summary>
        Mean: float[]
        /// <summary>The per-channel standard deviation of the training images in [0, 1] units.</summary>
        Std: float[]
    }

    /// <summary>Frees the splits that own native memory (in-memory splits hold all their images in one tensor).
    /// Whoever loaded the dataset disposes it; copies made with <c>{ dataset with ... }</c> share its splits.</summary>
    interface IDisposable with
        member this.Dispose() =
            for split in [ this.Train; this.Test ] do
                match split with
                | :? IDisposable as owned -> owned.Dispose()
                | _ -> ()

/// <summary>A split held in memory as one uint8 tensor N×C×H×W; <c>Load</c> indexes it (small datasets: MNIST,
/// CIFAR, and ImageFolders decoded once).</summary>
/// <param name="images">uint8 N×C×H×W; the split takes ownership and never modifies it.</param>
/// <param name="labels">N class indices.</param>
type InMemorySplit(images: torch.Tensor, labels: int[]) =
    do
        if isNull images then nullArg "images"
        if images.dtype <> torch.uint8 || images.dim () <> 4L then
            invalidArg "images" $"images must be uint8 N×C×H×W, got {images.dtype} {Tensors.describe images}"
        if images.shape[0] <> int64 labels.Length then
            invalidArg "labels" $"{labels.Length} labels for {images.shape[0]} images"

    /// <summary>The images, uint8 N×C×H×W (owned by the split: do not dispose).</summary>
    member _.Images = images

    interface ISplit with
        member _.Count = labels.Length
        member _.Labels = labels
        member _.Load(indices: int[]) =
            for i in indices do
                if i < 0 || i >= labels.Length then
                    raise (ArgumentOutOfRangeException("indices", $"index {i} outside the split's {labels.Length} images"))
            use index = torch.tensor (indices |> Array.map int64, dtype = torch.int64)
            images.index_select (0L, index)

    interface IDisposable with
        member _.Dispose() = images.Dispose()

/// <summary>An in-memory split that also carries coarse labels (CIFAR-100).</summary>
[<Sealed>]
type CoarseLabelledSplit(images: torch.Tensor, labels: int[], coarseLabels: int[], coarseClasses: string[]) =
    inherit InMemorySplit(images, labels)
    interface ICoarseLabelled with
        member _.CoarseLabels = coarseLabels
        member _.CoarseClasses = coarseClasses

/// <summary>An in-memory split over a whole listing of images of which only some were decoded (the ones a run reads:
/// see <see cref="M:Bake.Core.Data.Split.PerClass"/>): it has every image's label and index, so selections by index
/// work as on the full split, but only the decoded images can be loaded.</summary>
/// <param name="images">uint8 K×C×H×W, the decoded images in index order; the split takes ownership.</param>
/// <param name="labels">N class indices, of every image of the listing.</param>
/// <param name="slots">N entries: the row of <paramref name="images"/> holding image i, or −1 when not decoded.</param>
[<Sealed>]
type SelectedSplit(images: torch.Tensor, labels: int[], slots: int[]) =
    do
        if slots.Length <> labels.Length then invalidArg "slots" $"{slots.Length} slots for {labels.Length} labels"
    /// <summary>The decoded images (owned by the split: do not dispose).</summary>
    member _.Images = images
    interface ISplit with
        member _.Count = labels.Length
        member _.Labels = labels
        member _.Load(indices: int[]) =
            let rows =
                indices
                |> Array.map (fun i ->
                    if i < 0 || i >= labels.Length then
                        raise (ArgumentOutOfRangeException("indices", $"index {i} outside the split's {labels.Length} images"))
                    if slots[i] < 0 then
                        raise (InvalidOperationException $"image {i} was not decoded: the dataset was opened for a selection of its training images that leaves it out")
                    int64 slots[i])
            use index = torch.tensor (rows, dtype = torch.int64)
            images.index_select (0L, index)
    interface IDisposable with
        member _.Dispose() = images.Dispose()

/// <summary>Reading raw dataset files with errors that name the file, the offset and what was expected.</summary>
[<RequireQualifiedAccess>]
module DataFile =

    /// <summary>Raises a <see cref="T:Bake.Core.BakeException"/> naming <paramref name="path"/>.</summary>
    let fail (path: string) (message: string) : 'a = raise (BakeException($"{path}: {message}"))

    /// <summary>True when the file starts with the gzip magic bytes 1f 8b.</summary>
    let private isGzip (path: string) =
        use stream = File.OpenRead path
        stream.ReadByte() = 0x1f && stream.ReadByte() = 0x8b

    /// <summary>The whole content of a file, transparently decompressed when it is gzip'd (by its magic bytes).
    /// A missing, unreadable, truncated or corrupt gzip file raises a <see cref="T:Bake.Core.BakeException"/>
    /// naming it.</summary>
    [<CompiledName("ReadAll")>]
    let readAll (path: string) : byte[] =
        try
            if not (File.Exists path) then fail path "file not found"
            if isGzip path then
                use input = File.OpenRead path
                use gzip = new GZipStream(input, CompressionMode.Decompress)
                use output = new MemoryStream()
                gzip.CopyTo output
                // GZipStream stops quietly at a truncated stream: the trailer's size (mod 2^32) catches it.
                let compressed = File.ReadAllBytes path
                let n = compressed.Length
                let trailerSize =
                    if n < 18 then -1L
                    else int64 (Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(ReadOnlySpan(compressed, n - 4, 4)))
                if trailerSize <> (output.Length &&& 0xFFFFFFFFL) then
                    fail path $"corrupt or truncated gzip data: {output.Length} bytes decompressed, the gzip trailer announces {trailerSize}"
                output.ToArray()
            else
                File.ReadAllBytes path
        with
        | :? BakeException -> reraise ()
        | :? InvalidDataException as e -> fail path $"corrupt or truncated gzip data ({e.Message})"
        | :? EndOfStreamException as e -> fail path $"truncated gzip data ({e.Message})"
        | :? IOException
        | :? UnauthorizedAccessException as e -> fail path $"cannot read: {e.Message}"

    /// <summary>A fresh uint8 tensor of the given shape holding <paramref name="data"/> (which must not be modified
    /// afterwards: the tensor may share its memory).</summary>
    let uint8Tensor (data: byte[]) (shape: int64[]) : TorchSharp.torch.Tensor =
        torch.tensor (data, ReadOnlySpan<int64>(shape), dtype = Nullable torch.uint8)

    /// <summary>A big-endian unsigned 32-bit integer at <paramref name="offset"/>.</summary>
    let bigEndianInt32 (bytes: byte[]) (offset: int) : int =
        (int bytes[offset] <<< 24) ||| (int bytes[offset + 1] <<< 16) ||| (int bytes[offset + 2] <<< 8) ||| int bytes[offset + 3]

    /// <summary>The non-empty lines of a text file, trimmed (class-name lists such as batches.meta.txt).</summary>
    let lines (path: string) : string[] =
        try
            File.ReadAllLines path |> Array.map (fun line -> line.Trim()) |> Array.filter (fun line -> line <> "")
        with
        | :? IOException
        | :? UnauthorizedAccessException as e -> fail path $"cannot read: {e.Message}"

/// <summary>Statistics and checks shared by every dataset format.</summary>
[<RequireQualifiedAccess>]
module DatasetStats =

    /// <summary>Images per class: <c>result[c]</c> counts label c, for <paramref name="classes"/> classes.</summary>
    [<CompiledName("ClassCounts")>]
    let classCounts (classes: int) (split: ISplit) : int[] =
        let counts = Array.zeroCreate classes
        for label in split.Labels do
            if label >= 0 && label < classes then counts[label] <- counts[label] + 1
        counts

    /// <summary>Adds one image's exact per-channel sums of pixel values and of their squares (integers, so the
    /// totals do not depend on the order images are added in, nor on the thread count).</summary>
    /// <param name="sums">C running sums, updated.</param>
    /// <param name="squares">C running sums of squares, updated.</param>
    /// <param name="planar">uint8 pixels, channel-planar (C×H×W); not modified.</param>
    /// <param name="offset">Where the image starts in <paramref name="planar"/>.</param>
    /// <param name="pixels">H·W.</param>
    [<CompiledName("AddMoments")>]
    let addMoments (sums: int64[]) (squares: int64[]) (planar: byte[]) (offset: int) (pixels: int) : unit =
        for c in 0 .. sums.Length - 1 do
            let mutable s = 0L
            let mutable q = 0L
            let start = offset + c * pixels
            for p in start .. start + pixels - 1 do
                let v = int64 planar[p]
                s <- s + v
                q <- q + v * v
            sums[c] <- sums[c] + s
            squares[c] <- squares[c] + q

    /// <summary>Per-channel mean and standard deviation (population) in [0, 1] units from the sums of
    /// <see cref="M:Bake.Core.Data.DatasetStats.AddMoments"/> over <paramref name="pixels"/> pixels per channel.</summary>
    [<CompiledName("OfMoments")>]
    let ofMoments (sums: int64[]) (squares: int64[]) (pixels: int64) : float[] * float[] =
        let count = float pixels
        let mean = sums |> Array.map (fun s -> if pixels = 0L then 0.0 else float s / (255.0 * count))
        let std =
            Array.init sums.Length (fun c ->
                if pixels = 0L then 0.0 else sqrt (max 0.0 (float squares[c] / (65025.0 * count) - mean[c] * mean[c])))
        mean, std

    /// <summary>Per-channel mean and standard deviation (population) in [0, 1] units of a uint8 N×C×H×W tensor, from
    /// exact integer sums over chunks of 1,024 images copied out (memory stays bounded; no float tensor is made).</summary>
    [<CompiledName("MeanStd")>]
    let meanStd (images: torch.Tensor) : float[] * float[] =
        let n = images.shape[0]
        let channels = int images.shape[1]
        let pixels = int (images.shape[2] * images.shape[3])
        let sums = Array.zeroCreate channels
        let squares = Array.zeroCreate channels
        let chunk = 1024L
        let mutable start = 0L
        while start < n do
            let length = min chunk (n - start)
            use part = images.narrow(0L, start, length).contiguous ()
            // One copy of the native bytes (a TensorAccessor's ToArray reads element by element).
            let bytes = part.bytes.ToArray()
            for k in 0 .. int length - 1 do
                addMoments sums squares bytes (k * channels * pixels) pixels
            start <- start + length
        ofMoments sums squares (n * int64 pixels)

    /// <summary>Raises a <see cref="T:Bake.Core.BakeException"/> naming <paramref name="path"/> and the entry when a
    /// label lies outside [0, classes).</summary>
    [<CompiledName("RequireLabelsInRange")>]
    let requireLabelsInRange (path: string) (entryName: int -> string) (classes: int) (labels: int[]) : unit =
        match labels |> Array.tryFindIndex (fun label -> label < 0 || label >= classes) with
        | Some i -> DataFile.fail path $"{entryName i}: label {labels[i]} is outside the class range [0, {classes})"
        | None -> ()

    /// <summary>The dataset record for two in-memory splits, with the training split's mean and std.</summary>
    [<CompiledName("OfMemory")>]
    let ofMemory (name: string) (source: string) (classes: string[]) (train: InMemorySplit) (test: InMemorySplit) : Dataset =
        let shape = train.Images.shape |> Array.skip 1 |> Array.map int
        let testShape = test.Images.shape |> Array.skip 1 |> Array.map int
        if shape <> testShape then
            raise (BakeException($"{source}: the train images are {shape} but the test images are {testShape}"))
        let mean, std = meanStd train.Images
        { Name = name; Source = source; Classes = classes; ImageShape = shape; Train = train; Test = test; Mean = mean; Std = std }

/// <summary>Views of splits.</summary>
[<RequireQualifiedAccess>]
module Split =

    /// <summary>Splits images per class by their labels, in a seeded shuffle: the first <paramref name="holdoutPerClass"/>
    /// images of each class are held out (for calibration), the next <paramref name="perClass"/> (all when 0) are the
    /// training images. Returns (training, held-out) indices, each sorted.</summary>
    [<CompiledName("PerClass")>]
    let perClass (labels: int[], perClass: int, holdoutPerClass: int, seed: int) : int[] * int[] =
        let random = SeededRandom.Derive(int64 seed, 0x686f6c64L)
        let order = Array.init labels.Length id
        random.Shuffle order
        let byClass = order |> Array.groupBy (fun i -> labels[i])
        let held = byClass |> Array.collect (fun (_, members) -> Array.truncate holdoutPerClass members) |> Array.sort
        let training =
            byClass
            |> Array.collect (fun (_, members) ->
                let rest = Array.skip (min holdoutPerClass members.Length) members
                if perClass > 0 then Array.truncate perClass rest else rest)
            |> Array.sort
        training, held

    /// <summary>A view of a split restricted to some of its images (in the order of <paramref name="kept"/>).</summary>
    [<CompiledName("Subset")>]
    let subset (split: ISplit) (kept: int[]) : ISplit =
        let labels = kept |> Array.map (fun i -> split.Labels[i])
        { new ISplit with
            member _.Count = kept.Length
            member _.Labels = labels
            member _.Load indices = split.Load(indices |> Array.map (fun i -> kept[i])) }
