module Bake.Core.Tests.SynsetNamesTests

open System.IO
open System.Threading
open Expecto
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil
open Bake.Core.Tests.ImageFolderTests

/// A TinyImageNet-layout folder of 8×8 JPEGs: 3 training images per wnid, 1 validation image per wnid.
let writeTiny (root: string) (wnids: string[]) =
    Directory.CreateDirectory(Path.Combine(root, "val")) |> ignore
    File.WriteAllLines(Path.Combine(root, "wnids.txt"), wnids)
    let annotations =
        [| for index, wnid in Array.indexed wnids do
               for k in 0..2 do
                   writeImage (Path.Combine(root, "train", wnid, "images", $"{wnid}_{k}.JPEG")) 8 8 (pixels (10 * index + k) 192)
               writeImage (Path.Combine(root, "val", "images", $"val_{index}.JPEG")) 8 8 (pixels (100 + index) 192)
               yield $"val_{index}.JPEG\t{wnid}\t0\t0\t7\t7" |]
    File.WriteAllLines(Path.Combine(root, "val", "val_annotations.txt"), annotations)

/// TinyImageNet's words.txt format: wnid TAB comma-separated synonyms, for many more wnids than the dataset has.
let words =
    [| "n00001740\tentity"
       "n01443537\tgoldfish, Carassius auratus"
       "n02012849\tcrane"
       "n03126707\tcrane"
       "n01629819\tEuropean fire salamander, Salamandra salamandra" |]

[<Tests>]
let tests =
    testList "Data.SynsetNames" [
        test "TinyImageNet with words.txt: classes named by the first synonym, in wnid order; shared names carry the wnid" {
            use dir = new TempDir()
            writeTiny dir.Path [| "n03126707"; "n01443537"; "n02012849"; "n01629819"; "n09999999" |]
            File.WriteAllLines(dir.File "words.txt", words)
            let data = Datasets.loadFolder dir.Path None ImageFolder.defaultOptions
            // Labels follow the sorted wnids, as without names: n01443537 n01629819 n02012849 n03126707 n09999999.
            Expect.equal data.Classes [| "goldfish"; "European fire salamander"; "crane (n02012849)"; "crane (n03126707)"; "n09999999" |] "names"
            Expect.sequenceEqual data.Test.Labels [| 3; 0; 2; 1; 4 |] "validation labels unchanged"
            for fragment in [ "class names: first synonyms in words.txt"; "carry their wnid (crane)"; "1 class(es) not in it keep their folder name" ] do
                Expect.stringContains data.Source fragment "the source says where the names come from"
            let info = Datasets.describe data
            Expect.stringContains info "goldfish" "data info shows the names"
        }

        test "ImageFolder with ImageNet's LOC_synset_mapping.txt (space-separated); without a mapping file the folder names stay" {
            use dir = new TempDir()
            for split in [ "train"; "val" ] do
                for index, wnid in Array.indexed [| "n01443537"; "n01629819" |] do
                    writeImage (Path.Combine(dir.Path, split, wnid, "0.png")) 6 5 (pixels index 90)
            let plain = Datasets.loadFolder dir.Path None ImageFolder.defaultOptions
            Expect.equal plain.Classes [| "n01443537"; "n01629819" |] "no mapping file: wnids"
            Expect.isFalse (plain.Source.Contains "class names") "and no note"
            File.WriteAllLines(dir.File "LOC_synset_mapping.txt", [| "n01440764 tench, Tinca tinca"; "n01443537 goldfish, Carassius auratus"; "n01629819 European fire salamander" |])
            let named = Datasets.loadFolder dir.Path None ImageFolder.defaultOptions
            Expect.equal named.Classes [| "goldfish"; "European fire salamander" |] "first synonyms"
            Expect.stringContains named.Source "LOC_synset_mapping.txt" "source"
            // words.txt wins when both are present.
            File.WriteAllLines(dir.File "words.txt", [| "n01443537\tgold fish" |])
            Expect.equal (Datasets.loadFolder dir.Path None ImageFolder.defaultOptions).Classes [| "gold fish"; "n01629819" |] "words.txt first"
        }

        test "a class's line without a name is an error naming the file and line; other lines are not checked" {
            use dir = new TempDir()
            writeTiny dir.Path [| "n01443537" |]
            File.WriteAllLines(dir.File "words.txt", [| "garbage line for no class"; "n01443537\t , Carassius auratus" |])
            expectError (fun () -> Datasets.loadFolder dir.Path None ImageFolder.defaultOptions |> ignore) [ "words.txt"; "line 2"; "n01443537"; "expected '<wnid><TAB or space><name>" ]
        }

        test "names reach the checkpoint and bake predict's classes" {
            use dir = new TempDir()
            let data = Path.Combine(dir.Path, "data")
            writeTiny data [| "n02012849"; "n01443537" |]
            File.WriteAllLines(Path.Combine(data, "words.txt"), words)
            let run = Path.Combine(dir.Path, "run")
            let extra = [ $"TRAIN.DATASET={data}"; "TRAIN.PER_CLASS=0"; "TRAIN.BATCH_SIZE=4"; "OPTIM.MAX_EPOCH=1"; "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0" ]
            scoped (fun () -> TrainerTests.runTiny run extra ignore CancellationToken.None |> ignore)
            use predictor = Prediction.load run
            Expect.equal predictor.Classes [| "goldfish"; "crane" |] "the checkpoint's class names"
            let image = Path.Combine(data, "val", "images", "val_0.JPEG")
            let scores = (Prediction.predictFiles (predictor, [ image ], 2))[0]
            Expect.equal (scores |> Array.map (fun s -> s.ClassName) |> Array.sort) [| "crane"; "goldfish" |] "predict names the classes"
        }

        test "a run on a folder with TRAIN.PER_CLASS and held-out images holds only those, trains, and calibrates" {
            use dir = new TempDir()
            let data = Path.Combine(dir.Path, "data")
            writeTiny data [| "n02012849"; "n01443537" |]
            let run = Path.Combine(dir.Path, "run")
            let extra = [ $"TRAIN.DATASET={data}"; "TRAIN.PER_CLASS=1"; "TRAIN.HOLDOUT_PER_CLASS=1"; "TRAIN.BATCH_SIZE=2"; "OPTIM.MAX_EPOCH=1"; "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0" ]
            scoped (fun () -> TrainerTests.runTiny run extra ignore CancellationToken.None |> ignore)
            let configuration = (RunDirectory.tryConfiguration run).Value
            use trained = RunDirectory.trainingData configuration
            match trained.Train with
            | :? SelectedSplit as split -> Expect.equal split.Images.shape[0] 4L "2 classes × (1 training + 1 held-out) of 3 images each"
            | other -> failtest $"expected a SelectedSplit, got {other.GetType().Name}"
            let report = Robustness.evaluate (run, [], [], true, 500, 1)
            Expect.isSome report.Calibrated "temperature fitted on the held-out images"
        }

        test "real TinyImageNet-32 (a subset of ../shared/datasets/tinyimagenet32.tar.gz): 200 classes, n01443537 is goldfish" {
            match tinyImageNet32Folder () with
            | None -> ()
            | Some root ->
                let data = Datasets.loadFolder root None ImageFolder.defaultOptions
                Expect.equal data.Classes.Length 200 "200 classes"
                Expect.equal data.Classes[0] "goldfish" "label 0 = n01443537 = goldfish"
                Expect.equal (Array.distinct data.Classes).Length 200 "unique names"
                Expect.isFalse (data.Classes |> Array.exists (fun c -> c.StartsWith "n0" || c.Contains "(")) "every wnid named, no collision among the 200"
                Expect.equal data.Test.Count 10000 "50 validation images per class"
                Expect.stringContains data.Source "first synonyms in words.txt" "source"
        }
    ]
