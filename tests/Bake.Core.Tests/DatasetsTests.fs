module Bake.Core.Tests.DatasetsTests

open System.IO
open Expecto
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil

let load spec cache = Datasets.loadWith (spec, None, Some cache, ImageFolder.defaultOptions)

[<Tests>]
let tests =
    testList "Data.Datasets" [
        test "names: embedded, and fetched datasets from the cache folder" {
            use cache = new TempDir()
            Expect.equal (Datasets.load ("embedded", None)).Train.Count 8000 "embedded"
            writeIdxDataset (Directory.CreateDirectory(cache.File "mnist").FullName) true 8 4 2
            let mnist = load "mnist" cache.Path
            Expect.equal mnist.Name "mnist" "named"
            Expect.equal mnist.Train.Count 8 "from the cache"
            Expect.equal mnist.Classes Idx.mnistClasses "digits"
        }

        test "disposing a dataset frees its in-memory splits" {
            let dataset = Datasets.load ("embedded", None)
            let images = [ dataset.Train; dataset.Test ] |> List.map (fun split -> (split :?> InMemorySplit).Images)
            Expect.isFalse (images |> List.exists (fun t -> t.IsInvalid)) "alive while loaded"
            (dataset :> System.IDisposable).Dispose()
            Expect.isTrue (images |> List.forall (fun t -> t.IsInvalid)) "both splits freed"
        }

        test "a named dataset that was not fetched tells how to fetch it" {
            use cache = new TempDir()
            let e = throwsWith<BakeException> (fun () -> load "cifar100" cache.Path |> ignore)
            Expect.stringContains e.Message "fetch it into the cache first" "says what to do"
            Expect.equal (e :?> DatasetNotFetchedException).Name "cifar100" "names the dataset (the command line adds bake data fetch cifar100)"
            Expect.stringContains e.Message cache.Path "the cache"
        }

        test "an unknown name, a file and an unknown format are usage errors" {
            use dir = new TempDir()
            let e = throwsWith<UsageException> (fun () -> load "imagenet-21k" dir.Path |> ignore)
            Expect.stringContains e.Message "unknown dataset 'imagenet-21k'" "names it"
            File.WriteAllText(dir.File "x.txt", "")
            throwsWith<UsageException> (fun () -> load (dir.File "x.txt") dir.Path |> ignore) |> ignore
            let e = throwsWith<UsageException> (fun () -> Datasets.load (dir.Path, Some "jpeg") |> ignore)
            Expect.stringContains e.Message "imagefolder" "lists the formats"
        }

        test "a folder without a known layout is reported with what was looked for" {
            use dir = new TempDir()
            File.WriteAllText(dir.File "readme.txt", "nothing here")
            let e = throwsWith<BakeException> (fun () -> Datasets.load (dir.Path, None) |> ignore)
            Expect.stringContains e.Message "no supported dataset layout" "says so"
            Expect.stringContains e.Message "a format (DATA.FORMAT) forces one" "suggests forcing one"
        }

        test "--format forces a layout, and a forced layout that does not fit names the missing file" {
            use dir = new TempDir()
            writeIdxDataset dir.Path false 4 4 2
            Expect.equal (Datasets.load (dir.Path, Some "idx")).Train.Count 4 "forced idx"
            let e = throwsWith<BakeException> (fun () -> Datasets.load (dir.Path, Some "cifar10-binary") |> ignore)
            Expect.stringContains e.Message "test_batch.bin: missing split file" "names the expected file"
        }

        test "describe lists every class with its counts per split, the shape and the statistics" {
            let text = Datasets.describe (Datasets.embedded ())
            for fragment in [ "1×28×28"; "8000 images"; "2000 images"; "Ankle boot"; "mean"; "std" ] do
                Expect.stringContains text fragment fragment
            Expect.equal (text.Split('\n') |> Array.filter (fun line -> line.Contains "    800      200") |> Array.length) 10 "10 rows of 800/200"
        }
    ]
