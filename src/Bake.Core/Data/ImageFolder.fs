namespace Bake.Core.Data

open System
open System.IO
open System.Threading.Tasks
open SkiaSharp
open TorchSharp
open Bake.Core

/// <summary>How an ImageFolder (or TinyImageNet) dataset is opened.</summary>
type ImageFolderOptions =
    {
        /// <summary>Resize every image so its shorter side is this size, then center-crop a square of it, on decoding.
        /// None: the images' own size when they all have the same one; when they differ (fine-grained datasets such
        /// as CUB, Dogs, MIT67), the size <see cref="M:Bake.Core.Data.ImageFolder.StorageSize"/> chooses.</summary>
        ImageSize: int option
        /// <summary>Opt-in: leave out images that cannot be decoded (and report how many in the dataset's Source)
        /// instead of failing.</summary>
        SkipUndecodable: bool
        /// <summary>Some true: decode everything once at opening into one uint8 tensor; Some false: decode on demand
        /// in the loader's workers; None: in memory when the decoded images take at most
        /// <c>MemoryBudgetBytes</c>.</summary>
        InMemory: bool option
        /// <summary>The size limit of the automatic in-memory choice.</summary>
        MemoryBudgetBytes: int64
        /// <summary>The training images that will be read, given the training labels (sorted indices; e.g. a run's
        /// TRAIN.PER_CLASS and held-out images): in memory, only these are kept, the others are decoded once for the
        /// statistics and dropped. None: all. Ignored when undecodable images are skipped (the indices would move).</summary>
        TrainingSelection: (int[] -> int[]) option
        /// <summary>False: the training split's mean and std are not computed (empty arrays), so the training images
        /// the selection leaves out are not decoded at all; for a caller that brings its own statistics (evaluating a
        /// checkpoint, a run's separate TEST.DATASET).</summary>
        TrainingStatistics: bool
    }

/// <summary>A split of image files decoded on demand (SkiaSharp), for ImageFolders too large to hold in memory.</summary>
type FileSplit(files: string[], labels: int[], decode: string -> byte[], shape: int[]) =
    /// <summary>The image files, in index order.</summary>
    member _.Files = files
    interface ISplit with
        member _.Count = files.Length
        member _.Labels = labels
        member _.Load(indices: int[]) =
            let size = shape[0] * shape[1] * shape[2]
            let data = Array.zeroCreate (indices.Length * size)
            indices |> Array.iteri (fun k i -> Buffer.BlockCopy(decode files[i], 0, data, k * size, size))
            DataFile.uint8Tensor data [| int64 indices.Length; int64 shape[0]; int64 shape[1]; int64 shape[2] |]

/// <summary>ImageFolder datasets (torchvision's layout): <c>root/train/&lt;class&gt;/*.{jpg,jpeg,png}</c> and
/// <c>root/test/&lt;class&gt;/…</c> (or <c>val/</c>), classes sorted by name; and TinyImageNet's layout mapped onto
/// it. Images are decoded with SkiaSharp to RGB, 3×H×W uint8.</summary>
[<RequireQualifiedAccess>]
module ImageFolder =

    /// <summary>The default options: images at their own size, no skipping, in memory when both splits decoded take at most 1.5 GiB.</summary>
    let defaultOptions =
        { ImageSize = None; SkipUndecodable = false; InMemory = None; MemoryBudgetBytes = 1536L * 1024L * 1024L; TrainingSelection = None
          TrainingStatistics = true }

    let private extensions = set [ ".jpg"; ".jpeg"; ".png" ]

    /// <summary>True for the file extensions read as images (case-insensitive).</summary>
    let isImage (path: string) = extensions.Contains(Path.GetExtension(path).ToLowerInvariant())

    /// <summary>The most pixels a decoded image may have (64 megapixels, e.g. 8192 × 8192).</summary>
    [<Literal>]
    let MaxPixels = 67108864L

    /// <summary>Decodes an image file to RGB, channel-planar bytes (3×H×W) and its height and width.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The file cannot be read or decoded; the message names it.</exception>
    [<CompiledName("Decode")>]
    let decode (path: string) : byte[] * int * int =
        let bytes =
            try File.ReadAllBytes path
            with
            | :? IOException
            | :? UnauthorizedAccessException as e -> DataFile.fail path $"cannot read: {e.Message}"
        use data = SKData.CreateCopy bytes
        use codec = SKCodec.Create data
        if isNull codec then DataFile.fail path "undecodable image (not a JPEG or PNG SkiaSharp can read)"
        // The header's size is checked before any pixel memory is allocated: a file may claim 100,000 × 100,000.
        let width, height = codec.Info.Width, codec.Info.Height
        if width < 1 || height < 1 || int64 width * int64 height > MaxPixels then
            DataFile.fail path $"its header claims {width}×{height} pixels: more than an image Bake decodes ({MaxPixels:N0} pixels at most)"
        let info = SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul)
        use bitmap = new SKBitmap(info)
        match codec.GetPixels(info, bitmap.GetPixels()) with
        | SKCodecResult.Success -> ()
        | result -> DataFile.fail path $"undecodable image: SkiaSharp reports {result} after reading the header ({info.Width}×{info.Height})"
        let h, w = info.Height, info.Width
        let rgba = bitmap.GetPixelSpan()
        let plane = h * w
        let planar = Array.zeroCreate (3 * plane)
        for p in 0 .. plane - 1 do
            planar[p] <- rgba[4 * p]
            planar[plane + p] <- rgba[4 * p + 1]
            planar[2 * plane + p] <- rgba[4 * p + 2]
        planar, h, w

    /// <summary>Encodes channel-planar bytes (C×H×W, C = 1 gray or 3 RGB) with SkiaSharp: PNG, or JPEG at
    /// <paramref name="quality"/> (libjpeg's standard quantisation tables scaled to that quality, 4:2:0 chroma
    /// subsampling, as Pillow's default <c>save</c>; SkiaSharp optimises the Huffman tables).</summary>
    /// <param name="format">PNG or JPEG.</param>
    /// <param name="quality">The JPEG quality 1–100 (ignored for PNG).</param>
    /// <param name="planar">C·H·W bytes, channel-planar; not modified.</param>
    /// <param name="channels">C, 1 or 3.</param>
    /// <param name="h">H.</param>
    /// <param name="w">W.</param>
    /// <returns>The encoded file's bytes (a fresh array), or null when SkiaSharp cannot encode.</returns>
    [<CompiledName("Encode")>]
    let encode (format: SKEncodedImageFormat) (quality: int) (planar: byte[]) (channels: int) (h: int) (w: int) : byte[] =
        // Interleaved rows in the bitmap's layout: Gray8 for one channel, RGBA (opaque) for three.
        let colorType = if channels = 1 then SKColorType.Gray8 else SKColorType.Rgba8888
        use bitmap = new SKBitmap(SKImageInfo(w, h, colorType, SKAlphaType.Opaque))
        let pixelBytes = if channels = 1 then 1 else 4
        let row = Array.zeroCreate<byte> bitmap.RowBytes
        for y in 0 .. h - 1 do
            for x in 0 .. w - 1 do
                let p = y * w + x
                if channels = 1 then row[x] <- planar[p]
                else
                    for c in 0 .. 2 do
                        row[pixelBytes * x + c] <- planar[c * h * w + p]
                    row[pixelBytes * x + 3] <- 255uy
            Runtime.InteropServices.Marshal.Copy(row, 0, bitmap.GetPixels() + nativeint (y * bitmap.RowBytes), row.Length)
        use encoded = bitmap.Encode(format, quality)
        if isNull encoded then null else encoded.ToArray()

    /// <summary>Writes an image as a PNG file (lossless, so <see cref="M:Bake.Core.Data.ImageFolder.Decode(System.String)"/>
    /// reads the same pixels back), atomically.</summary>
    /// <param name="path">The file to write.</param>
    /// <param name="image">uint8 C×H×W with C = 1 (grayscale) or 3 (RGB); not modified.</param>
    /// <exception cref="T:System.ArgumentException">The image is not uint8 C×H×W with 1 or 3 channels.</exception>
    /// <exception cref="T:Bake.Core.BakeException">The file cannot be written.</exception>
    [<CompiledName("SavePng")>]
    let savePng (path: string, image: torch.Tensor) : unit =
        if isNull image then nullArg "image"
        if image.dtype <> torch.uint8 || image.dim () <> 3L || (image.shape[0] <> 1L && image.shape[0] <> 3L) then
            invalidArg "image" $"expected a uint8 C×H×W image with 1 or 3 channels, got {image.dtype} {Tensors.describe image}"
        let channels, h, w = int image.shape[0], int image.shape[1], int image.shape[2]
        let encoded = encode SKEncodedImageFormat.Png 100 (image.contiguous().data<byte>().ToArray()) channels h w
        if isNull encoded then raise (BakeException $"{path}: SkiaSharp could not encode a {w}×{h} PNG")
        Files.writeAtomic path (fun stream -> stream.Write(encoded, 0, encoded.Length))

    /// <summary>The width and height an image file's header declares (no pixel is decoded), or None when unreadable.</summary>
    let private headerSize (path: string) : (int * int) option =
        try
            use codec = SKCodec.Create path
            if isNull codec then None else Some(codec.Info.Width, codec.Info.Height)
        with _ -> None

    /// <summary>The square size images of different sizes are stored at when no size is given: 256 when the smallest
    /// side is above 64 pixels (then the presets train on random-resized 224 crops of it and test on its center 224
    /// crop, the official fine-grained recipe: resize the shorter side to 256, center-crop 224), else the smallest side.</summary>
    [<CompiledName("StorageSize")>]
    let storageSize (smallestSide: int) : int = if smallestSide > 64 then 256 else smallestSide

    /// <summary>Decodes and brings the image to <paramref name="shape"/>: resized (shorter side) and center-cropped
    /// when an image size is set, otherwise checked to have that shape.</summary>
    let private decodeTo (imageSize: int option) (shape: int[]) (path: string) : byte[] =
        let planar, h, w = decode path
        match imageSize with
        | None ->
            if h <> shape[1] || w <> shape[2] then
                DataFile.fail path
                    $"image is {w}×{h} but the dataset's images are {shape[2]}×{shape[1]} (the sizes sampled at opening agreed): give an image size (ImageFolderOptions.ImageSize; TRAIN.IM_SIZE / TEST.IM_SIZE for training) to resize images of different sizes"
            planar
        | Some size when h = size && w = size -> planar
        | Some size ->
            use _ = torch.NewDisposeScope()
            let image = DataFile.uint8Tensor planar [| 1L; 3L; int64 h; int64 w |]
            let resized = Transforms.resizeCenterCrop { Resize = size; Crop = size } image
            resized.mul(Tensors.scalar 255.0).round().clamp(Tensors.scalar 0.0, Tensors.scalar 255.0).to_type(torch.uint8).contiguous().data<byte>().ToArray()

    /// <summary>Lists the class folders of a split folder, sorted by ordinal name.</summary>
    let private classFolders (splitFolder: string) =
        Directory.GetDirectories splitFolder |> Array.sortWith (fun a b -> String.CompareOrdinal(a, b))

    /// <summary>The image files of a folder (recursively for TinyImageNet's <c>images/</c>), sorted.</summary>
    let private imagesIn (folder: string) =
        Directory.GetFiles(folder, "*", SearchOption.AllDirectories)
        |> Array.filter isImage
        |> Array.sortWith (fun a b -> String.CompareOrdinal(a, b))

    /// <summary>Builds a split over files and labels: decodes everything into memory, or keeps the files, and drops
    /// undecodable files when asked. Returns the split, the skipped files and the per-channel statistics.</summary>
    let private makeSplits (source: string) (options: ImageFolderOptions) (train: (string * int)[]) (test: (string * int)[]) =
        // Without a size, the headers of a seeded sample of up to 256 files (no pixels decoded) tell whether the images
        // share one size; when they do not, every image is stored at a common square size.
        let options =
            match options.ImageSize with
            | Some _ -> options
            | None ->
                let all = Array.append train test
                let sample = Sampling.shuffledBatches (all.Length, min 256 all.Length, 0, 0, None) |> Array.tryHead |> Option.defaultValue [||]
                let sizes = sample |> Array.choose (fun i -> headerSize (fst all[i])) |> Array.distinct
                if sizes.Length > 1 then
                    let smallest = sizes |> Array.map (fun (w, h) -> min w h) |> Array.min
                    { options with ImageSize = Some(storageSize smallest) }
                else options
        let firstShape () =
            let candidates = Seq.append train test |> Seq.map fst
            let rec first (files: string list) =
                match files with
                | [] -> DataFile.fail source "no decodable image found"
                | path :: rest ->
                    try
                        let _, h, w = decode path
                        match options.ImageSize with
                        | Some size -> [| 3; size; size |]
                        | None -> [| 3; h; w |]
                    with :? BakeException when options.SkipUndecodable -> first rest
            first (List.ofSeq (Seq.truncate 100 candidates))
        let shape = firstShape ()
        let imageBytes = int64 (shape[0] * shape[1] * shape[2])
        let decodeOne = decodeTo options.ImageSize shape
        let selection = if options.SkipUndecodable then None else options.TrainingSelection
        // Which entries of the training listing are held (slot) and which only counted in the statistics (−1).
        let trainSlots =
            match selection with
            | None -> Array.init train.Length id
            | Some select ->
                let labels = train |> Array.map snd
                let slots = Array.create train.Length -1
                select labels |> Array.distinct |> Array.sort |> Array.iteri (fun slot i ->
                    if i < 0 || i >= train.Length then invalidArg "options" $"TrainingSelection gave index {i} outside the {train.Length} training images"
                    slots[i] <- slot)
                slots
        let held = trainSlots |> Array.filter (fun slot -> slot >= 0) |> Array.length
        let total = int64 (held + test.Length) * imageBytes
        let inMemory = options.InMemory |> Option.defaultValue (total <= options.MemoryBudgetBytes)
        let skipped = Collections.Concurrent.ConcurrentBag<string>()
        /// Decodes a listing into memory: the entries with a slot into one uint8 tensor, every entry into the
        /// statistics (exact integer sums, per image, so thread timing does not matter) when asked.
        let build (entries: (string * int)[]) (slots: int[]) (withStats: bool) : ISplit * float[] * float[] =
            if inMemory then
                let heldCount = slots |> Array.filter (fun slot -> slot >= 0) |> Array.length
                if int64 heldCount * imageBytes > int64 Array.MaxLength then
                    DataFile.fail source
                        $"{heldCount} images of {imageBytes} bytes do not fit in one in-memory array: decode them on demand instead (the InMemory option set to false)"
                // Every image decoded straight into its slot of one array; failures kept by index.
                let data = Array.zeroCreate<byte> (heldCount * int imageBytes)
                let ok = Array.zeroCreate<bool> entries.Length
                let errors = Array.zeroCreate<exn> entries.Length
                let channels = shape[0]
                let pixels = shape[1] * shape[2]
                let sums = Array.zeroCreate<int64> (if withStats then entries.Length * channels else 0)
                let squares = Array.zeroCreate<int64> sums.Length
                Parallel.For(
                    0,
                    entries.Length,
                    ParallelOptions(MaxDegreeOfParallelism = Environment.ProcessorCount),
                    fun i ->
                        try
                            // An entry neither held nor counted in the statistics is not decoded.
                            if slots[i] >= 0 || withStats then
                                let image = decodeOne (fst entries[i])
                                if slots[i] >= 0 then Buffer.BlockCopy(image, 0, data, slots[i] * int imageBytes, int imageBytes)
                                if withStats then
                                    let s = Array.zeroCreate<int64> channels
                                    let q = Array.zeroCreate<int64> channels
                                    DatasetStats.addMoments s q image 0 pixels
                                    Array.blit s 0 sums (i * channels) channels
                                    Array.blit q 0 squares (i * channels) channels
                            ok[i] <- true
                        with :? BakeException as e ->
                            if options.SkipUndecodable then skipped.Add(fst entries[i]) else errors[i] <- (e :> exn)
                ) |> ignore
                // The first failing file in index order, whatever the thread timing.
                match errors |> Array.tryFind (fun e -> not (isNull e)) with
                | Some e -> raise e
                | None -> ()
                let keptIndices = Array.init entries.Length id |> Array.filter (fun i -> ok[i])
                let mean, std =
                    if not withStats then [||], [||]
                    else
                        let total = Array.zeroCreate<int64> channels
                        let totalSquares = Array.zeroCreate<int64> channels
                        for i in keptIndices do
                            for c in 0 .. channels - 1 do
                                total[c] <- total[c] + sums[i * channels + c]
                                totalSquares[c] <- totalSquares[c] + squares[i * channels + c]
                        DatasetStats.ofMoments total totalSquares (int64 keptIndices.Length * int64 pixels)
                if heldCount < entries.Length then
                    // A selection (never combined with skipping): every entry decoded, the selected ones held.
                    let images = DataFile.uint8Tensor data [| int64 heldCount; int64 shape[0]; int64 shape[1]; int64 shape[2] |]
                    (new SelectedSplit(images, entries |> Array.map snd, slots) :> ISplit), mean, std
                else
                    let data =
                        if keptIndices.Length = entries.Length then data
                        else
                            let compact = Array.zeroCreate<byte> (keptIndices.Length * int imageBytes)
                            keptIndices |> Array.iteri (fun k i -> Buffer.BlockCopy(data, i * int imageBytes, compact, k * int imageBytes, int imageBytes))
                            compact
                    let labels = keptIndices |> Array.map (fun i -> snd entries[i])
                    let images = DataFile.uint8Tensor data [| int64 labels.Length; int64 shape[0]; int64 shape[1]; int64 shape[2] |]
                    (new InMemorySplit(images, labels) :> ISplit), mean, std
            else
                // Files that SkiaSharp cannot even open are found now (headers only); deeper corruption is reported
                // by name when the loader reaches the image.
                let readable (path: string) =
                    try
                        use codec = SKCodec.Create path
                        not (isNull codec)
                    with _ -> false
                let kept =
                    if options.SkipUndecodable then
                        entries |> Array.filter (fun (path, _) -> readable path || (skipped.Add path; false))
                    else entries
                let split = FileSplit(kept |> Array.map fst, kept |> Array.map snd, decodeOne, shape) :> ISplit
                if not withStats then split, [||], [||]
                else
                    // Statistics from a seeded sample of up to 2,000 images.
                    let sample = Sampling.shuffledBatches (split.Count, min 2000 split.Count, 0, 0, None) |> Array.tryHead |> Option.defaultValue [||]
                    use images = split.Load sample
                    let mean, std = DatasetStats.meanStd images
                    split, mean, std
        let trainSplit, mean, std = build train trainSlots options.TrainingStatistics
        let testSplit, _, _ = build test (Array.init test.Length id) false
        // Decoding leaves a few kilobytes of garbage per image (file bytes, planar copies) that would otherwise stay
        // committed to the managed heap for the whole run: ~160 MB for CIFAR-10's 60,000 JPEGs (docs/performance.md).
        if inMemory then GC.Collect(2, GCCollectionMode.Aggressive, true, true)
        trainSplit, testSplit, shape, mean, std, List.ofSeq skipped, inMemory, options.ImageSize

    let private dataset name (source: string) classes (options: ImageFolderOptions) train test =
        let trainSplit, testSplit, shape, mean, std, skipped, inMemory, resized = makeSplits source options train test
        let storage = if inMemory then "in memory" else "decoded on demand"
        let storage =
            match resized, options.ImageSize with
            | Some size, None -> $"{storage}; images of different sizes, each resized (shorter side {size}) and center-cropped to {size}×{size}"
            | _ -> storage
        let skippedNote =
            match skipped with
            | [] -> ""
            | files ->
                let shown = files |> List.sort |> List.truncate 3 |> String.concat ", "
                let more = if files.Length > 3 then ", …" else ""
                $"; {files.Length} undecodable image(s) skipped: {shown}{more}"
        { Name = name
          Source = $"{source} ({storage}{skippedNote})"
          Classes = classes
          ImageShape = shape
          Train = trainSplit
          Test = testSplit
          Mean = mean
          Std = std }

    /// <summary>Class names from the root's <c>words.txt</c> or <c>LOC_synset_mapping.txt</c> when it has one (see
    /// <see cref="T:Bake.Core.Data.SynsetNames"/>), and the dataset's Source saying so.</summary>
    let private named (layout: string) (root: string) (classes: string[]) =
        match SynsetNames.forClasses root classes with
        | names, Some note -> names, $"{layout}: {root}, {note}"
        | names, None -> names, $"{layout}: {root}"

    /// <summary>The test split folder of an ImageFolder root: <c>test/</c>, else <c>val/</c>.</summary>
    let testFolder (root: string) : string option =
        [ "test"; "val" ] |> List.map (fun name -> Path.Combine(root, name)) |> List.tryFind Directory.Exists

    /// <summary>Loads <c>root/train/&lt;class&gt;/*</c> and <c>root/test/&lt;class&gt;/*</c> (or <c>val/</c>). Classes are
    /// the folder names, sorted; with a <c>words.txt</c> or <c>LOC_synset_mapping.txt</c> in the root (an ImageNet-style
    /// folder of wnids) they are named by the first synonym of each wnid.</summary>
    /// <exception cref="T:Bake.Core.BakeException">A missing split, an empty class folder, a test class that is not a
    /// training class, or an undecodable image (unless skipped); the message names the folder or file.</exception>
    [<CompiledName("Load")>]
    let load (root: string) (options: ImageFolderOptions) : Dataset =
        let trainFolder = Path.Combine(root, "train")
        if not (Directory.Exists trainFolder) then DataFile.fail trainFolder "missing split folder (an ImageFolder has train/ and test/ or val/)"
        let testRoot =
            testFolder root |> Option.defaultWith (fun () -> DataFile.fail (Path.Combine(root, "test")) "missing split folder (looked for test/ and val/)")
        let classes = classFolders trainFolder |> Array.map Path.GetFileName
        if classes.Length = 0 then DataFile.fail trainFolder "no class folders"
        let index = classes |> Array.mapi (fun i c -> c, i) |> dict
        let entries (splitFolder: string) =
            classFolders splitFolder
            |> Array.collect (fun folder ->
                let name = Path.GetFileName folder
                match index.TryGetValue name with
                | true, label ->
                    let files = imagesIn folder
                    if files.Length = 0 then DataFile.fail folder "empty class folder: no .jpg, .jpeg or .png file"
                    files |> Array.map (fun f -> f, label)
                | _ -> DataFile.fail folder $"class '{name}' has no folder in {trainFolder}")
        let train = entries trainFolder
        let test = entries testRoot
        if test.Length = 0 then DataFile.fail testRoot "no class folders"
        let names, source = named "imagefolder" root classes
        dataset (DirectoryInfo(root).Name) source names options train test

    /// <summary>Loads TinyImageNet's layout: <c>train/&lt;wnid&gt;/images/*.JPEG</c>, validation images in
    /// <c>val/images/</c> labelled by <c>val/val_annotations.txt</c> (file, wnid, box), used as the test split.
    /// Classes are the wnids (from <c>wnids.txt</c> when present), sorted, named by the first synonym of each in
    /// <c>words.txt</c> when present (<c>n01443537</c> → <c>goldfish</c>).</summary>
    [<CompiledName("LoadTinyImageNet")>]
    let loadTinyImageNet (root: string) (options: ImageFolderOptions) : Dataset =
        let trainFolder = Path.Combine(root, "train")
        let annotations = Path.Combine(root, "val", "val_annotations.txt")
        if not (Directory.Exists trainFolder) then DataFile.fail trainFolder "missing split folder"
        if not (File.Exists annotations) then DataFile.fail annotations "missing validation annotations"
        let wnids =
            let listed = Path.Combine(root, "wnids.txt")
            (if File.Exists listed then DataFile.lines listed else classFolders trainFolder |> Array.map Path.GetFileName)
            |> Array.sortWith (fun a b -> String.CompareOrdinal(a, b))
        let index = wnids |> Array.mapi (fun i c -> c, i) |> dict
        let train =
            wnids
            |> Array.collect (fun wnid ->
                let folder = Path.Combine(trainFolder, wnid)
                if not (Directory.Exists folder) then DataFile.fail folder "missing class folder"
                let files = imagesIn folder
                if files.Length = 0 then DataFile.fail folder "empty class folder: no image file"
                files |> Array.map (fun f -> f, index[wnid]))
        let test =
            File.ReadAllLines annotations
            |> Array.mapi (fun line text -> line, text)
            |> Array.filter (fun (_, text) -> text.Trim() <> "")
            |> Array.map (fun (line, text) ->
                let fields = text.Split '\t'
                if fields.Length < 2 then DataFile.fail annotations $"line {line + 1}: expected 'file<TAB>wnid…', got '{text}'"
                match index.TryGetValue fields[1] with
                | true, label ->
                    let file = Path.Combine(root, "val", "images", fields[0])
                    if not (File.Exists file) then DataFile.fail annotations $"line {line + 1}: image {file} does not exist"
                    file, label
                | _ -> DataFile.fail annotations $"line {line + 1}: class '{fields[1]}' is not one of the {wnids.Length} training classes")
        let names, source = named "tinyimagenet" root wnids
        dataset (DirectoryInfo(root).Name) source names options train test
