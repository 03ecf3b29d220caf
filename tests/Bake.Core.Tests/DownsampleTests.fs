module Bake.Core.Tests.DownsampleTests

open System
open System.IO
open Expecto
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil
open Bake.Core.Tests.ImageFolderTests
open Bake.Core.Tests.DataCommandTests

/// A small TinyImageNet-200-layout folder of 64×64 JPEGs (3 wnids, 4 training images each incl. one PNG, 2
/// validation and 2 test images), with wnids.txt, words.txt, boxes and annotations.
let writeOfficial (root: string) =
    let wnids = [| "n01443537"; "n01629819"; "n01641577" |]
    File.WriteAllLines(Path.Combine(Directory.CreateDirectory(root).FullName, "wnids.txt"), wnids)
    File.WriteAllLines(Path.Combine(root, "words.txt"), [| "n01443537\tgoldfish, Carassius auratus"; "n01629819\tEuropean fire salamander"; "n01641577\tbullfrog, Rana catesbeiana" |])
    // Smooth ramps per channel plus seeded noise: something for the filter and the JPEG encoder to work on.
    let image seed =
        let noise = pixels seed (3 * 64 * 64)
        Array.init (3 * 64 * 64) (fun i -> byte (((i % 64) * 3 + (i / 64 % 64) * (seed % 5) + 17 * (i / 4096) + int noise[i] % 24) % 256))
    for index, wnid in Array.indexed wnids do
        for k in 0..3 do
            let extension = if k = 3 then "png" else "JPEG"
            writeImage (Path.Combine(root, "train", wnid, "images", $"{wnid}_{k}.{extension}")) 64 64 (image (10 * index + k))
        File.WriteAllLines(Path.Combine(root, "train", wnid, $"{wnid}_boxes.txt"), [| for k in 0..3 -> $"{wnid}_{k}.JPEG\t1\t2\t60\t61" |])
    let annotations = [| for k in 0..5 -> $"val_{k}.JPEG\t{wnids[k % 3]}\t0\t3\t50\t62" |]
    for k in 0..5 do
        writeImage (Path.Combine(root, "val", "images", $"val_{k}.JPEG")) 64 64 (image (100 + k))
    File.WriteAllLines(Path.Combine(root, "val", "val_annotations.txt"), annotations)
    for k in 0..1 do
        writeImage (Path.Combine(root, "test", "images", $"test_{k}.JPEG")) 64 64 (image (200 + k))

let relativeFiles (root: string) =
    Directory.GetFiles(root, "*", SearchOption.AllDirectories) |> Array.map (fun f -> Path.GetRelativePath(root, f)) |> Array.sort

[<Tests>]
let tests =
    testList "Data.Downsample" [
        test "bake data downsample: the same layout at 32×32, images resized (Pillow's bilinear) and re-encoded (JPEG 75), text copied" {
            use dir = new TempDir()
            let source = dir.File "tiny-imagenet-200"
            writeOfficial source
            let target = dir.File "tinyimagenet32"
            let text = runData [| "downsample"; "--from"; source; "--to"; target |]
            Expect.stringContains text "20 images resized, 6 other files copied" "summary"
            Expect.stringContains text "bilinear, JPEG quality 75" "states the filter and quality"
            Expect.sequenceEqual (relativeFiles target) (relativeFiles source) "every file, same paths"
            Expect.sequenceEqual (Directory.GetFileSystemEntries dir.Path |> Array.map Path.GetFileName |> Array.sort) [| "tiny-imagenet-200"; "tinyimagenet32" |] "no temporary folder left"
            for file in relativeFiles source |> Array.filter (fun f -> f.EndsWith ".txt") do
                Expect.sequenceEqual (File.ReadAllBytes(Path.Combine(target, file))) (File.ReadAllBytes(Path.Combine(source, file))) $"{file} copied unchanged"
            // One JPEG and the PNG: decode(result) = decode(encode(resize(decode(source)))).
            for file in [ Path.Combine("train", "n01629819", "images", "n01629819_1.JPEG"); Path.Combine("train", "n01629819", "images", "n01629819_3.png") ] do
                let planar, h, w = ImageFolder.decode (Path.Combine(source, file))
                let resized = Resampling.resize Bilinear planar 3 h w 32 32
                let ours, oh, ow = ImageFolder.decode (Path.Combine(target, file))
                Expect.equal (oh, ow) (32, 32) $"{file}: 32×32"
                if file.EndsWith ".png" then Expect.sequenceEqual ours resized "PNG stays lossless"
                else
                    let reference = dir.File "reference.jpg"
                    File.WriteAllBytes(reference, ImageFolder.encode SkiaSharp.SKEncodedImageFormat.Jpeg 75 resized 3 32 32)
                    let expected, _, _ = ImageFolder.decode reference
                    Expect.sequenceEqual ours expected $"{file}: the quality-75 JPEG of the resized image"
            use data = Datasets.loadFolder target None ImageFolder.defaultOptions
            Expect.equal data.Classes [| "goldfish"; "European fire salamander"; "bullfrog" |] "loads as TinyImageNet, named"
            Expect.sequenceEqual data.ImageShape [| 3; 32; 32 |] "3×32×32"
            Expect.equal (data.Train.Count, data.Test.Count) (12, 6) "counts"
        }

        test "options: --size, --filter, --quality" {
            use dir = new TempDir()
            let source = dir.File "src"
            writeOfficial source
            let target = dir.File "out16"
            let text = runData [| "downsample"; "--from"; source; "--to"; target; "--size"; "16"; "--filter"; "lanczos"; "--quality"; "90" |]
            Expect.stringContains text "16×16, lanczos, JPEG quality 90" "echoed"
            let file = Path.Combine("val", "images", "val_0.JPEG")
            let _, h, w = ImageFolder.decode (Path.Combine(target, file))
            Expect.equal (h, w) (16, 16) "16×16"
            let tables, _ = ResamplingTests.jpegSettings (File.ReadAllBytes(Path.Combine(target, file)))
            Expect.sequenceEqual tables[0] (fst (ResamplingTests.standardTables 90)) "quality 90"
        }

        test "bad input: missing folder, wrong layout, existing target, bad options, undecodable image; nothing left behind" {
            use dir = new TempDir()
            let source = dir.File "src"
            let target = dir.File "out"
            expectError (fun () -> runData [| "downsample"; "--from"; source; "--to"; target |] |> ignore) [ source; "folder not found"; "TinyImageNet-200's layout" ]
            Directory.CreateDirectory(Path.Combine(source, "train", "n01")) |> ignore
            expectError (fun () -> runData [| "downsample"; "--from"; source; "--to"; target |] |> ignore) [ "val_annotations.txt"; "missing file" ]
            Directory.Delete(source, true)
            writeOfficial source
            usageError [| "downsample"; "--from"; source; "--to"; source |] "already exists"
            usageError [| "downsample"; "--from"; source; "--to"; Path.Combine(source, "small") |] "is inside the source"
            usageError [| "downsample"; "--from"; source; "--to"; target; "--quality"; "0" |] "quality must be 1–100, got 0"
            usageError [| "downsample"; "--from"; source; "--to"; target; "--size"; "0" |] "size must be at least 1, got 0"
            usageError [| "downsample"; "--from"; source; "--to"; target; "--filter"; "nearest" |] "unknown resampling filter 'nearest'"
            let broken = Path.Combine(source, "train", "n01641577", "images", "n01641577_2.JPEG")
            File.WriteAllBytes(broken, [| 0xFFuy; 0xD8uy; 1uy; 2uy |])
            expectError (fun () -> runData [| "downsample"; "--from"; source; "--to"; target |] |> ignore) [ broken; "undecodable" ]
            Expect.sequenceEqual (Directory.GetFileSystemEntries dir.Path |> Array.map Path.GetFileName) [| "src" |] "no target and no temporary folder"
            // The program: exit 1 for a failure, 2 for a usage mistake, one line on stderr, no stack trace.
            let code, _, err = runBake $"data downsample --from \"{source}\" --to \"{target}\""
            Expect.equal code 1 "exit 1"
            Expect.stringStarts err "bake: " "one clear line"
            Expect.isFalse (err.Contains "   at ") "no stack trace"
            let code, _, err = runBake $"data downsample --from \"{source}\""
            Expect.equal code 2 "exit 2 without --to"
            Expect.stringContains err "--to" "names the missing option"
        }
    ]
