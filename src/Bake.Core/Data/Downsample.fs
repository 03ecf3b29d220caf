namespace Bake.Core.Data

open System
open System.Collections.Concurrent
open System.IO
open System.Threading
open System.Threading.Tasks
open SkiaSharp
open Bake.Core

/// <summary>How <see cref="M:Bake.Core.Data.Downsample.Run"/> writes the smaller copy.</summary>
type DownsampleOptions =
    {
        /// <summary>The side of the output images: every image is resized to Size×Size.</summary>
        Size: int
        /// <summary>The resampling filter (Pillow-exact, antialiased).</summary>
        Filter: ResampleFilter
        /// <summary>The JPEG quality, 1–100 (libjpeg's scale; 4:2:0 chroma subsampling).</summary>
        Quality: int
    }

    /// <summary>The settings that reproduce the 32×32 TinyImageNet copy the project was developed with: 32×32,
    /// Pillow's BILINEAR (torchvision's <c>Resize</c> default), JPEG quality 75 (Pillow's default), 4:2:0.</summary>
    static member Default = { Size = 32; Filter = Bilinear; Quality = 75 }

/// <summary>What a downsampling run wrote.</summary>
type DownsampleSummary =
    {
        /// <summary>The folder written.</summary>
        Target: string
        /// <summary>Images resized and re-encoded.</summary>
        Images: int
        /// <summary>Other files (wnids.txt, words.txt, annotations, boxes) copied unchanged.</summary>
        Copied: int
    }

/// <summary>Makes a smaller copy of a TinyImageNet-200 folder in the same layout (<c>train/&lt;wnid&gt;/images/*.JPEG</c>,
/// <c>val/images/</c> + <c>val/val_annotations.txt</c>, <c>test/images/</c> when present, <c>wnids.txt</c>,
/// <c>words.txt</c>): every image decoded to RGB (gray JPEGs too), resized to Size×Size with a Pillow-exact filter
/// and written again in its own format (JPEG at the given quality; PNG stays lossless); every other file copied
/// unchanged, so bounding boxes stay in the original images' pixel coordinates. With the default options this is
/// the 32×32 TinyImageNet the project's studies use (<c>docs/tinyimagenet32.md</c>).</summary>
[<RequireQualifiedAccess>]
module Downsample =

    /// <summary>The layout expected, for error messages.</summary>
    let private layout =
        "TinyImageNet-200's layout: train/<wnid>/images/*.JPEG, val/images/*.JPEG + val/val_annotations.txt (and wnids.txt, words.txt, test/images/)"

    let private validate (source: string) (target: string) (options: DownsampleOptions) =
        if options.Size < 1 then raise (UsageException($"size must be at least 1, got {options.Size}", "size"))
        if options.Quality < 1 || options.Quality > 100 then raise (UsageException($"quality must be 1–100, got {options.Quality}", "quality"))
        if not (Directory.Exists source) then raise (BakeException $"{source}: folder not found (expected {layout})")
        let train = Path.Combine(source, "train")
        if not (Directory.Exists train) then DataFile.fail train $"missing folder: expected {layout}"
        let annotations = Path.Combine(source, "val", "val_annotations.txt")
        if not (File.Exists annotations) then DataFile.fail annotations $"missing file: expected {layout}"
        if Directory.GetDirectories train |> Array.isEmpty then DataFile.fail train $"no class folders: expected {layout}"
        if File.Exists target || Directory.Exists target then
            raise (UsageException($"{target} already exists: choose another target folder, or remove it first", "to"))
        let inside = source.TrimEnd(Path.DirectorySeparatorChar) + string Path.DirectorySeparatorChar
        if target.StartsWith(inside, StringComparison.Ordinal) then
            raise (UsageException($"the target {target} is inside the source {source}: write the copy elsewhere", "to"))

    /// <summary>Resizes and re-encodes one image file.</summary>
    let private convert (options: DownsampleOptions) (path: string) : byte[] =
        let planar, h, w = ImageFolder.decode path
        let resized = Resampling.resize options.Filter planar 3 h w options.Size options.Size
        let format, quality =
            if Path.GetExtension(path).Equals(".png", StringComparison.OrdinalIgnoreCase) then SKEncodedImageFormat.Png, 100
            else SKEncodedImageFormat.Jpeg, options.Quality
        let encoded = ImageFolder.encode format quality resized 3 options.Size options.Size
        if isNull encoded then DataFile.fail path $"SkiaSharp could not encode the {options.Size}×{options.Size} result"
        encoded

    /// <summary>Writes the downsampled copy of <paramref name="source"/> into <paramref name="target"/>, atomically:
    /// everything goes to a temporary folder next to the target (<c>.NAME.GUID.partial</c>), renamed to it once
    /// complete. A failure or a kill leaves no target; a failure also removes the temporary folder, a kill leaves it
    /// to be deleted by hand.</summary>
    /// <param name="source">The official TinyImageNet-200 folder (the one holding <c>train/</c>, <c>val/</c>).</param>
    /// <param name="target">The folder to create; it must not exist.</param>
    /// <param name="options">Size, filter and JPEG quality.</param>
    /// <param name="progress">Called with a progress line now and then (from the calling thread).</param>
    /// <exception cref="T:Bake.Core.UsageException">A size or quality out of range, a target that exists or lies
    /// inside the source.</exception>
    /// <exception cref="T:Bake.Core.BakeException">A missing folder, a folder not in TinyImageNet's layout, an
    /// undecodable image or an unwritable target; the message names the file.</exception>
    [<CompiledName("Run")>]
    let run (source: string, target: string, options: DownsampleOptions, progress: string -> unit) : DownsampleSummary =
        if String.IsNullOrWhiteSpace source then raise (UsageException("no source folder given", "from"))
        if String.IsNullOrWhiteSpace target then raise (UsageException("no target folder given", "to"))
        let source = Path.GetFullPath source
        let target = Path.GetFullPath(target).TrimEnd(Path.DirectorySeparatorChar)
        validate source target options
        let files =
            Directory.GetFiles(source, "*", SearchOption.AllDirectories) |> Array.sortWith (fun a b -> String.CompareOrdinal(a, b))
        let isImage = files |> Array.map ImageFolder.isImage
        let images = isImage |> Array.filter id |> Array.length
        if images = 0 then DataFile.fail source $"no image files (.jpg, .jpeg, .png): expected {layout}"
        let parent = Path.GetDirectoryName target
        let temp = Path.Combine(parent, $".{Path.GetFileName target}.{Guid.NewGuid():N}.partial")
        try
            try
                Directory.CreateDirectory temp |> ignore
            with
            | :? IOException
            | :? UnauthorizedAccessException as e -> raise (BakeException($"cannot create {temp}: {e.Message}", e))
            progress $"{images} images and {files.Length - images} other files in {source}; writing {target} ({options.Size}×{options.Size}, {options.Filter.Name}, JPEG quality {options.Quality})"
            let errors = ConcurrentDictionary<int, exn>()
            let completed = ref 0
            let reports = ConcurrentQueue<int>()
            let work =
                Task.Run(fun () ->
                    Parallel.For(
                        0,
                        files.Length,
                        ParallelOptions(MaxDegreeOfParallelism = Environment.ProcessorCount),
                        fun i (state: ParallelLoopState) ->
                            try
                                let relative = Path.GetRelativePath(source, files[i])
                                let output = Path.Combine(temp, relative)
                                Directory.CreateDirectory(Path.GetDirectoryName output) |> ignore
                                if isImage[i] then
                                    File.WriteAllBytes(output, convert options files[i])
                                    let count = Interlocked.Increment &completed.contents
                                    if count % 10000 = 0 then reports.Enqueue count
                                else
                                    File.Copy(files[i], output)
                            with e ->
                                errors[i] <- e
                                state.Stop()
                    )
                    |> ignore)
            let report () =
                let mutable count = 0
                while reports.TryDequeue &count do
                    progress $"  {count}/{images} images"
            while not (work.Wait 200) do
                report ()
            report ()
            if not errors.IsEmpty then
                // The first failing file in path order, whatever the thread timing.
                match errors[Seq.min errors.Keys] with
                | :? BakeException as e -> raise e
                | :? IOException
                | :? UnauthorizedAccessException as e -> raise (BakeException($"cannot write into {temp}: {e.Message}", e))
                | e -> raise e
            try
                Directory.Move(temp, target)
            with
            | :? IOException
            | :? UnauthorizedAccessException as e -> raise (BakeException($"cannot rename {temp} to {target}: {e.Message}", e))
            { Target = target; Images = images; Copied = files.Length - images }
        with _ ->
            (try if Directory.Exists temp then Directory.Delete(temp, true) with _ -> ())
            reraise ()
