namespace Bake.Core.Data

open System.IO
open TorchSharp

/// <summary>The IDX format of MNIST, Fashion-MNIST, KMNIST… (LeCun et al.): a 4-byte magic number
/// (0, 0, element type, number of dimensions), one big-endian 32-bit size per dimension, then the elements in
/// row-major order. Files may be gzip'd. Only unsigned-byte elements (type 0x08) are image data.</summary>
[<RequireQualifiedAccess>]
module Idx =

    /// <summary>The four standard file names of a split pair: train images/labels, test images/labels.</summary>
    let standardNames =
        [| "train-images-idx3-ubyte"; "train-labels-idx1-ubyte"; "t10k-images-idx3-ubyte"; "t10k-labels-idx1-ubyte" |]

    /// <summary>Class names of the known IDX datasets (all have 10 classes).</summary>
    let fashionMnistClasses =
        [| "T-shirt/top"; "Trouser"; "Pullover"; "Dress"; "Coat"; "Sandal"; "Shirt"; "Sneaker"; "Bag"; "Ankle boot" |]

    /// <summary>Digit names for MNIST.</summary>
    let mnistClasses = Array.init 10 string

    /// <summary>KMNIST's ten hiragana classes, romanised.</summary>
    let kmnistClasses = [| "o"; "ki"; "su"; "tsu"; "na"; "ha"; "ma"; "ya"; "re"; "wo" |]

    /// <summary>Reads an IDX file of unsigned bytes: its dimensions and its elements.</summary>
    /// <exception cref="T:Bake.Core.BakeException">A wrong magic number, an unsupported element type, a
    /// truncated file or trailing bytes; the message names the file and the offset.</exception>
    [<CompiledName("Read")>]
    let read (path: string) : int[] * byte[] =
        let bytes = DataFile.readAll path
        if bytes.Length < 4 then DataFile.fail path $"truncated: {bytes.Length} bytes, an IDX header needs at least 4"
        if bytes[0] <> 0uy || bytes[1] <> 0uy then
            DataFile.fail path
                $"wrong magic number 0x{bytes[0]:x2}{bytes[1]:x2}{bytes[2]:x2}{bytes[3]:x2} at offset 0: an IDX file starts with 0x0000 followed by the element type and the number of dimensions"
        if bytes[2] <> 0x08uy then
            DataFile.fail path $"element type 0x{bytes[2]:x2} at offset 2 is not supported: expected 0x08 (unsigned byte)"
        let dims = int bytes[3]
        let header = 4 + 4 * dims
        if dims = 0 then DataFile.fail path "0 dimensions at offset 3"
        if bytes.Length < header then
            DataFile.fail path $"truncated header: {dims} dimensions need {header} bytes, the file has {bytes.Length}"
        let shape = Array.init dims (fun d -> DataFile.bigEndianInt32 bytes (4 + 4 * d))
        shape
        |> Array.iteri (fun d size ->
            if size < 0 then DataFile.fail path $"dimension {d} at offset {4 + 4 * d} is negative ({size})")
        let expected = shape |> Array.fold (fun acc size -> acc * int64 size) 1L
        let actual = int64 (bytes.Length - header)
        if actual < expected then
            let described = shape |> Array.map string |> String.concat "×"
            DataFile.fail path
                $"truncated: the header ({described}) announces {expected} bytes of data from offset {header}, the file has {actual}"
        if actual > expected then
            DataFile.fail path
                $"{actual - expected} unexpected bytes after the {expected} bytes of data announced by the header (offset {header + int expected}): not an IDX file of this shape"
        shape, bytes[header..]

    /// <summary>Reads an image file (N×H×W, or N×C×H×W when 4-dimensional) into a fresh uint8 tensor N×C×H×W on
    /// the CPU, owned by the caller.</summary>
    [<CompiledName("ReadImages")>]
    let readImages (path: string) : torch.Tensor =
        let shape, data = read path
        let dims =
            match shape with
            | [| n; h; w |] -> [| int64 n; 1L; int64 h; int64 w |]
            | [| n; c; h; w |] -> [| int64 n; int64 c; int64 h; int64 w |]
            | _ -> DataFile.fail path $"{shape.Length} dimensions: an image file has 3 (N×H×W) or 4 (N×C×H×W)"
        DataFile.uint8Tensor data dims

    /// <summary>Reads a label file (one dimension) into class indices.</summary>
    [<CompiledName("ReadLabels")>]
    let readLabels (path: string) : int[] =
        let shape, data = read path
        if shape.Length <> 1 then
            DataFile.fail path $"{shape.Length} dimensions: a label file has 1"
        data |> Array.map int

    /// <summary>Finds a standard file name in <paramref name="folder"/>, raw or with <c>.gz</c>, also accepting the
    /// dotted variant (<c>train-images.idx3-ubyte</c>) some mirrors use.</summary>
    [<CompiledName("Find")>]
    let find (folder: string) (standardName: string) : string option =
        let dotted =
            let i = standardName.IndexOf "-idx"
            standardName.Substring(0, i) + "." + standardName.Substring(i + 1)
        [ standardName; standardName + ".gz"; dotted; dotted + ".gz" ]
        |> List.map (fun name -> Path.Combine(folder, name))
        |> List.tryFind File.Exists

    /// <summary>Class names for a folder of IDX files: one name per line in <c>classes.txt</c> when present,
    /// otherwise those of the dataset the folder's name points to (Fashion-MNIST, KMNIST, else MNIST's digits when
    /// the labels fit, else the label numbers).</summary>
    let private classNames (folder: string) (maxLabel: int) =
        let listed = Path.Combine(folder, "classes.txt")
        if File.Exists listed then
            DataFile.lines listed
        else
            let name = (DirectoryInfo folder).Name.ToLowerInvariant()
            if name.Contains "fashion" then fashionMnistClasses
            elif name.Contains "kmnist" then kmnistClasses
            elif maxLabel < 10 then mnistClasses
            else Array.init (maxLabel + 1) string

    /// <summary>Loads the train and test splits of a folder holding the four standard IDX files.</summary>
    /// <param name="folder">The folder.</param>
    /// <param name="name">The dataset name to report.</param>
    /// <param name="classes">The class names, or None to infer them (see <c>classes.txt</c>).</param>
    /// <exception cref="T:Bake.Core.BakeException">A missing file, a corrupt file, images and labels of different
    /// counts, or a label outside the class range; the message names the file and the entry.</exception>
    [<CompiledName("Load")>]
    let load (folder: string) (name: string) (classes: string[] option) : Dataset =
        let path standardName =
            match find folder standardName with
            | Some path -> path
            | None -> DataFile.fail (Path.Combine(folder, standardName)) "missing split file (looked for it raw and .gz)"
        let paths = standardNames |> Array.map path
        let loadSplit (imagesPath: string) (labelsPath: string) =
            let labels = readLabels labelsPath
            let images = readImages imagesPath
            let count = images.shape[0]
            if count <> int64 labels.Length then
                images.Dispose()
                DataFile.fail labelsPath $"{labels.Length} labels for {count} images in {imagesPath}"
            labels, images
        let trainLabels, trainImages = loadSplit paths[0] paths[1]
        let testLabels, testImages = loadSplit paths[2] paths[3]
        let classes =
            classes
            |> Option.defaultWith (fun () -> classNames folder (Array.append trainLabels testLabels |> Array.fold max 0))
        let entry i = $"label entry {i} (offset {8 + i})"
        DatasetStats.requireLabelsInRange paths[1] entry classes.Length trainLabels
        DatasetStats.requireLabelsInRange paths[3] entry classes.Length testLabels
        // IDX files declare no class count: classes named by their numbers come from the largest label, so one corrupt
        // label byte (200 in a 10-class file) would make a 201-class dataset. Every class must have a training image.
        let numbered = classes = Array.init classes.Length string && classes.Length > 10
        let present = Array.zeroCreate<bool> classes.Length
        for label in trainLabels do present[label] <- true
        match present |> Array.tryFindIndex not with
        | Some _ when not numbered -> ()
        | Some missing ->
            let largest = trainLabels |> Array.indexed |> Array.maxBy snd
            let empty = present |> Array.indexed |> Array.filter (snd >> not) |> Array.map fst
            let shown = empty |> Array.truncate 5 |> Array.map string |> String.concat ", "
            let more = if empty.Length > 5 then $", … ({empty.Length} classes)" else ""
            DataFile.fail paths[1] $"class {missing} has no training image (classes without one: {shown}{more}) while {entry (fst largest)} holds label {snd largest}: a corrupt label, or list the class names in classes.txt"
        | None -> ()
        DatasetStats.ofMemory name $"idx: {folder}" classes (new InMemorySplit(trainImages, trainLabels)) (new InMemorySplit(testImages, testLabels))
