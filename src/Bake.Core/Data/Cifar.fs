namespace Bake.Core.Data

open System
open System.IO
open Bake.Core

/// <summary>CIFAR-10 and CIFAR-100 (Krizhevsky 2009) in their two official layouts: the binary version
/// (<c>cifar-10-batches-bin</c>: records of 1 label byte + 3072 pixel bytes; <c>cifar-100-binary</c>: coarse label byte,
/// fine label byte, 3072 pixel bytes) and the Python version (<c>cifar-10-batches-py</c>, <c>cifar-100-python</c>:
/// pickled dicts holding a numpy uint8 array 'data' of N×3072 and label lists). Pixels are stored channel-planar
/// (1024 red, 1024 green, 1024 blue, rows of 32), i.e. already 3×32×32.</summary>
[<RequireQualifiedAccess>]
module Cifar =

    /// <summary>Bytes of one image.</summary>
    [<Literal>]
    let ImageBytes = 3072

    /// <summary>CIFAR-10's classes, in label order.</summary>
    let cifar10Classes =
        [| "airplane"; "automobile"; "bird"; "cat"; "deer"; "dog"; "frog"; "horse"; "ship"; "truck" |]

    /// <summary>CIFAR-100's 100 fine classes, in label order (alphabetical, as in its meta file).</summary>
    let cifar100Classes =
        ("apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
         + "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
         + "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
         + "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
         + "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
         + "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
         + "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm")
            .Split ' '

    /// <summary>CIFAR-100's 20 coarse classes (superclasses), in label order.</summary>
    let cifar100CoarseClasses =
        ("aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
         + "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
         + "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees "
         + "vehicles_1 vehicles_2")
            .Split ' '

    /// <summary>One split read from disk: N×3072 pixel bytes, fine labels and (CIFAR-100) coarse labels.</summary>
    type private Part = { Pixels: byte[]; Labels: int[]; Coarse: int[] }

    let private concat (parts: Part list) =
        { Pixels = parts |> List.map (fun p -> p.Pixels) |> Array.concat
          Labels = parts |> List.map (fun p -> p.Labels) |> Array.concat
          Coarse = parts |> List.map (fun p -> p.Coarse) |> Array.concat }

    /// <summary>Reads a binary batch file: records of <paramref name="labelBytes"/> label bytes (1 for CIFAR-10:
    /// the label; 2 for CIFAR-100: coarse then fine) followed by 3072 pixel bytes.</summary>
    let private readBinary (path: string) (labelBytes: int) (classes: int) (coarseClasses: int) : Part =
        let bytes = DataFile.readAll path
        let record = labelBytes + ImageBytes
        if bytes.Length = 0 then DataFile.fail path "empty file, expected CIFAR records"
        if bytes.Length % record <> 0 then
            let whole = bytes.Length / record
            DataFile.fail path
                $"truncated or corrupt: {bytes.Length} bytes is not a whole number of {record}-byte records ({labelBytes} label byte(s) + {ImageBytes} pixel bytes); record {whole} at offset {whole * record} is cut short"
        let n = bytes.Length / record
        let pixels = Array.zeroCreate (n * ImageBytes)
        let labels = Array.zeroCreate n
        let coarse = if labelBytes = 2 then Array.zeroCreate n else [||]
        for i in 0 .. n - 1 do
            let offset = i * record
            let label = int bytes[offset + labelBytes - 1]
            if label >= classes then
                DataFile.fail path $"record {i} (offset {offset + labelBytes - 1}): label {label} is outside the class range [0, {classes})"
            labels[i] <- label
            if labelBytes = 2 then
                let c = int bytes[offset]
                if c >= coarseClasses then
                    DataFile.fail path $"record {i} (offset {offset}): coarse label {c} is outside the class range [0, {coarseClasses})"
                coarse[i] <- c
            Buffer.BlockCopy(bytes, offset + labelBytes, pixels, i * ImageBytes, ImageBytes)
        { Pixels = pixels; Labels = labels; Coarse = coarse }

    /// <summary>Reads a Python batch: a pickled dict with 'data' (numpy uint8 N×3072 or N×3×32×32) and the label
    /// lists named by <paramref name="labelKey"/> (and 'coarse_labels' for CIFAR-100).</summary>
    let private readPickle (path: string) (labelKey: string) (classes: int) (coarseClasses: int option) : Part =
        let root = Pickle.read path (DataFile.readAll path)
        let keys () =
            match root with
            | PickleValue.Dict items -> items |> Seq.choose (fst >> Pickle.text) |> String.concat ", "
            | _ -> "none: not a dict"
        let entry (key: string) =
            match Pickle.tryItem key root with
            | Some v -> v
            | None -> DataFile.fail path $"no '{key}' entry in the pickled batch (its keys: {keys ()})"
        let data =
            match Pickle.asNdarray (entry "data") with
            | Some(_, dtype, _, _) when dtype <> "u1" -> DataFile.fail path $"entry 'data': dtype '{dtype}', expected 'u1' (uint8)"
            | Some(_, _, true, _) -> DataFile.fail path "entry 'data': Fortran-ordered array, expected C order"
            | Some(shape, _, _, data) ->
                let elements = shape |> Array.fold (fun acc d -> acc * int64 d) 1L
                let perImage = if shape.Length > 0 && shape[0] > 0 then elements / int64 shape[0] else 0L
                if perImage <> int64 ImageBytes || elements <> int64 data.Length then
                    let described = shape |> Array.map string |> String.concat "×"
                    DataFile.fail path $"entry 'data': shape {described} with {data.Length} bytes, expected N×3072 uint8"
                data
            | None -> DataFile.fail path "entry 'data' is not a numpy array"
        let labelsOf key range =
            match Pickle.asInts (entry key) with
            | Some labels ->
                DatasetStats.requireLabelsInRange path (fun i -> $"entry '{key}'[{i}]") range labels
                labels
            | None -> DataFile.fail path $"entry '{key}' is not a list of 32-bit integers (a value is not an integer, or out of range)"
        let labels = labelsOf labelKey classes
        if labels.Length * ImageBytes <> data.Length then
            DataFile.fail path $"entry '{labelKey}' has {labels.Length} labels for {data.Length / ImageBytes} images in 'data'"
        let coarse = coarseClasses |> Option.map (labelsOf "coarse_labels") |> Option.defaultValue [||]
        if coarseClasses.IsSome && coarse.Length <> labels.Length then
            DataFile.fail path $"entry 'coarse_labels' has {coarse.Length} labels for {labels.Length} images"
        { Pixels = data; Labels = labels; Coarse = coarse }

    /// <summary>Class names from a pickled meta file's list entry, when present and of the right length.</summary>
    let private pickledNames (path: string) (key: string) (expected: int) : string[] option =
        if not (File.Exists path) then None
        else
            match Pickle.read path (DataFile.readAll path) |> Pickle.tryItem key |> Option.bind Pickle.asTexts with
            | Some names when names.Length = expected -> Some names
            | Some names -> DataFile.fail path $"entry '{key}' lists {names.Length} names, expected {expected}"
            | None -> DataFile.fail path $"no list of names under '{key}'"

    /// <summary>Class names from a text file (one per line), when present and of the right length.</summary>
    let private listedNames (path: string) (expected: int) : string[] option =
        if not (File.Exists path) then None
        else
            match DataFile.lines path with
            | names when names.Length = expected -> Some names
            | names -> DataFile.fail path $"{names.Length} class names, expected {expected}"

    let private split (part: Part) (coarseClasses: string[] option) : InMemorySplit =
        let images = DataFile.uint8Tensor part.Pixels [| int64 part.Labels.Length; 3L; 32L; 32L |]
        match coarseClasses with
        | Some names -> new CoarseLabelledSplit(images, part.Labels, part.Coarse, names)
        | None -> new InMemorySplit(images, part.Labels)

    let private requireFile (folder: string) (name: string) =
        let path = Path.Combine(folder, name)
        if not (File.Exists path) then DataFile.fail path "missing split file"
        path

    /// <summary>The training batch files data_batch_1, data_batch_2, … (with <paramref name="extension"/>) in
    /// numeric order.</summary>
    let private trainingBatches (folder: string) (extension: string) =
        let batches =
            Directory.GetFiles(folder, "data_batch_*" + extension)
            |> Array.choose (fun path ->
                let name = Path.GetFileName path
                let number = name.Substring(11, name.Length - 11 - extension.Length)
                match Int32.TryParse number with
                | true, k -> Some(k, path)
                | _ -> None)
            |> Array.sortBy fst
            |> Array.map snd
        if batches.Length = 0 then DataFile.fail (Path.Combine(folder, "data_batch_1" + extension)) "missing split file (no training batch)"
        batches

    /// <summary>Loads CIFAR-10 from the binary layout (<c>data_batch_1..5.bin</c>, <c>test_batch.bin</c>,
    /// optional <c>batches.meta.txt</c>).</summary>
    [<CompiledName("LoadCifar10Binary")>]
    let loadCifar10Binary (folder: string) : Dataset =
        let test = requireFile folder "test_batch.bin"
        let train = trainingBatches folder ".bin" |> Array.toList |> List.map (fun path -> readBinary path 1 10 0) |> concat
        let classes = listedNames (Path.Combine(folder, "batches.meta.txt")) 10 |> Option.defaultValue cifar10Classes
        DatasetStats.ofMemory "cifar10" $"cifar10-binary: {folder}" classes (split train None) (split (readBinary test 1 10 0) None)

    /// <summary>Loads CIFAR-100 from the binary layout (<c>train.bin</c>, <c>test.bin</c>, optional
    /// <c>fine_label_names.txt</c> and <c>coarse_label_names.txt</c>); the splits carry the coarse labels too.</summary>
    [<CompiledName("LoadCifar100Binary")>]
    let loadCifar100Binary (folder: string) : Dataset =
        let trainPath = requireFile folder "train.bin"
        let testPath = requireFile folder "test.bin"
        let classes = listedNames (Path.Combine(folder, "fine_label_names.txt")) 100 |> Option.defaultValue cifar100Classes
        let coarse = listedNames (Path.Combine(folder, "coarse_label_names.txt")) 20 |> Option.defaultValue cifar100CoarseClasses
        let train = readBinary trainPath 2 100 20
        let test = readBinary testPath 2 100 20
        DatasetStats.ofMemory "cifar100" $"cifar100-binary: {folder}" classes (split train (Some coarse)) (split test (Some coarse))

    /// <summary>Loads CIFAR-10 from the Python layout (<c>data_batch_1..5</c>, <c>test_batch</c>, optional
    /// <c>batches.meta</c>).</summary>
    [<CompiledName("LoadCifar10Pickle")>]
    let loadCifar10Pickle (folder: string) : Dataset =
        let test = requireFile folder "test_batch"
        let train = trainingBatches folder "" |> Array.toList |> List.map (fun path -> readPickle path "labels" 10 None) |> concat
        let classes = pickledNames (Path.Combine(folder, "batches.meta")) "label_names" 10 |> Option.defaultValue cifar10Classes
        DatasetStats.ofMemory "cifar10" $"cifar10-pickle: {folder}" classes (split train None) (split (readPickle test "labels" 10 None) None)

    /// <summary>Loads CIFAR-100 from the Python layout (<c>train</c>, <c>test</c>, optional <c>meta</c>).</summary>
    [<CompiledName("LoadCifar100Pickle")>]
    let loadCifar100Pickle (folder: string) : Dataset =
        let trainPath = requireFile folder "train"
        let testPath = requireFile folder "test"
        let meta = Path.Combine(folder, "meta")
        let classes = pickledNames meta "fine_label_names" 100 |> Option.defaultValue cifar100Classes
        let coarse = pickledNames meta "coarse_label_names" 20 |> Option.defaultValue cifar100CoarseClasses
        let train = readPickle trainPath "fine_labels" 100 (Some 20)
        let test = readPickle testPath "fine_labels" 100 (Some 20)
        DatasetStats.ofMemory "cifar100" $"cifar100-pickle: {folder}" classes (split train (Some coarse)) (split test (Some coarse))
