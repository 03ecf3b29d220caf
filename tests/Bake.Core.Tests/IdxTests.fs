module Bake.Core.Tests.IdxTests

open System.IO
open Expecto
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil

/// Writes one IDX file and expects loading the dataset to fail with a message containing every fragment.
let expectLoadError (setup: string -> unit) (fragments: string list) =
    use dir = new TempDir()
    writeIdxDataset dir.Path true 6 4 3
    setup dir.Path
    expectError (fun () -> Idx.load dir.Path "t" None |> ignore) fragments

[<Tests>]
let tests =
    testList "Data.Idx" [
        test "the embedded Fashion-MNIST subset: 800/200 per class, 1×28×28, statistics from its pixels" {
            let data = Datasets.embedded ()
            Expect.equal data.Train.Count 8000 "train images"
            Expect.equal data.Test.Count 2000 "test images"
            Expect.sequenceEqual data.ImageShape [| 1; 28; 28 |] "shape"
            Expect.equal data.Classes Idx.fashionMnistClasses "class names"
            Expect.isTrue (DatasetStats.classCounts 10 data.Train |> Array.forall ((=) 800)) "800 per class"
            Expect.isTrue (DatasetStats.classCounts 10 data.Test |> Array.forall ((=) 200)) "200 per class"
            // The mean and std computed in a different way: straight from the file's bytes.
            let _, bytes = Idx.read (Path.Combine(Datasets.embeddedDirectory (), "train-images-idx3-ubyte.gz"))
            let values = bytes |> Array.map (fun b -> float b / 255.0)
            let mean = Array.average values
            let std = sqrt (values |> Array.averageBy (fun v -> (v - mean) ** 2.0))
            Expect.floatClose Accuracy.high data.Mean[0] mean "mean"
            Expect.floatClose Accuracy.medium data.Std[0] std "std"
            // Load returns exactly the file's images, in the requested order, repeats allowed.
            Expect.sequenceEqual (loadBytes data.Train [| 3; 0; 3 |]) (Array.concat [ bytes[3 * 784 .. 4 * 784 - 1]; bytes[0..783]; bytes[3 * 784 .. 4 * 784 - 1] ]) "images 3, 0, 3"
        }

        test "gzip'd and raw files give the same dataset, labels and pixels" {
            use gz = new TempDir()
            use raw = new TempDir()
            writeIdxDataset gz.Path true 12 6 4
            writeIdxDataset raw.Path false 12 6 4
            let a = Idx.load gz.Path "a" None
            let b = Idx.load raw.Path "b" None
            Expect.sequenceEqual a.Train.Labels b.Train.Labels "labels"
            Expect.sequenceEqual a.Train.Labels (Array.init 12 (fun i -> i % 4)) "labels as written"
            Expect.sequenceEqual (loadBytes a.Test [| 0 .. 5 |]) (pixels 2 (6 * 20)) "test pixels as written"
            Expect.sequenceEqual (loadBytes a.Train [| 0 .. 11 |]) (loadBytes b.Train [| 0 .. 11 |]) "same pixels"
            Expect.sequenceEqual a.ImageShape [| 1; 5; 4 |] "shape"
        }

        test "the dotted file names of some mirrors are found too" {
            use dir = new TempDir()
            writeIdxDataset dir.Path false 4 4 2
            for name in Directory.GetFiles dir.Path do
                let file = Path.GetFileName name
                File.Move(name, Path.Combine(dir.Path, file.Replace("-idx", ".idx")))
            Expect.equal (Idx.load dir.Path "d" None).Train.Count 4 "loaded"
        }

        test "a wrong magic number names the file and offset 0" {
            expectLoadError
                (fun dir -> File.WriteAllBytes(Path.Combine(dir, "train-images-idx3-ubyte.gz"), gzip (Array.append [| 0x50uy; 0x4Buy; 3uy; 4uy |] (Array.zeroCreate 100))))
                [ "train-images-idx3-ubyte.gz"; "wrong magic number 0x504b0304"; "offset 0" ]
        }

        test "an unsupported element type names offset 2" {
            expectLoadError
                (fun dir -> File.WriteAllBytes(Path.Combine(dir, "t10k-labels-idx1-ubyte.gz"), gzip [| 0uy; 0uy; 0x0Duy; 1uy; 0uy; 0uy; 0uy; 0uy |]))
                [ "t10k-labels-idx1-ubyte.gz"; "element type 0x0d at offset 2" ]
        }

        test "a truncated data section names the file, the expected and the actual size" {
            expectLoadError
                (fun dir -> File.WriteAllBytes(Path.Combine(dir, "train-images-idx3-ubyte.gz"), gzip (idxBytes [| 6; 5; 4 |] (pixels 1 100))))
                [ "train-images-idx3-ubyte.gz"; "truncated"; "120 bytes of data from offset 16"; "has 100" ]
        }

        test "a truncated gzip stream is reported as such" {
            expectLoadError
                (fun dir ->
                    let path = Path.Combine(dir, "train-images-idx3-ubyte.gz")
                    let bytes = File.ReadAllBytes path
                    File.WriteAllBytes(path, bytes[.. bytes.Length / 2]))
                [ "train-images-idx3-ubyte.gz"; "gzip" ]
        }

        test "trailing bytes are not silently ignored" {
            expectLoadError
                (fun dir -> File.WriteAllBytes(Path.Combine(dir, "train-labels-idx1-ubyte.gz"), gzip (Array.append (idxBytes [| 6 |] (Array.zeroCreate 6)) [| 1uy; 2uy |])))
                [ "train-labels-idx1-ubyte.gz"; "2 unexpected bytes"; "offset 14" ]
        }

        test "a label outside the class range names the file and the entry" {
            expectLoadError
                (fun dir ->
                    File.WriteAllLines(Path.Combine(dir, "classes.txt"), [| "a"; "b"; "c" |])
                    File.WriteAllBytes(Path.Combine(dir, "train-labels-idx1-ubyte.gz"), gzip (idxBytes [| 6 |] [| 0uy; 1uy; 2uy; 0uy; 7uy; 1uy |])))
                [ "train-labels-idx1-ubyte.gz"; "label entry 4 (offset 12)"; "label 7"; "[0, 3)" ]
        }

        test "image and label counts that differ name both files" {
            expectLoadError
                (fun dir -> File.WriteAllBytes(Path.Combine(dir, "t10k-labels-idx1-ubyte.gz"), gzip (idxBytes [| 3 |] [| 0uy; 1uy; 2uy |])))
                [ "t10k-labels-idx1-ubyte.gz"; "3 labels for 4 images"; "t10k-images-idx3-ubyte.gz" ]
        }

        test "a missing split file is named" {
            expectLoadError
                (fun dir -> File.Delete(Path.Combine(dir, "t10k-images-idx3-ubyte.gz")))
                [ "t10k-images-idx3-ubyte"; "missing split file" ]
        }
    ]
