module Bake.Core.Tests.ResamplingTests

open System
open System.IO
open System.Text.Json
open Expecto
open SkiaSharp
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil

/// Pillow's resize results and a Pillow JPEG, written by tests/fixtures/make_resample_golden.py.
let golden = lazy (JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "fixtures", "resample_golden.json"))))

let bytesOf (element: JsonElement) = [| for v in element.EnumerateArray() -> byte (v.GetInt32()) |]
let intsOf (element: JsonElement) = [| for v in element.EnumerateArray() -> v.GetInt32() |]

/// The JPEG segments before the scan: (marker, payload).
let segments (jpeg: byte[]) =
    let rec walk i acc =
        if i + 4 > jpeg.Length || jpeg[i] <> 0xFFuy then List.rev acc
        else
            let marker = jpeg[i + 1]
            let length = int jpeg[i + 2] * 256 + int jpeg[i + 3]
            let acc = (marker, jpeg[i + 4 .. i + 1 + length]) :: acc
            if marker = 0xDAuy then List.rev acc else walk (i + 2 + length) acc
    walk 2 []

/// libjpeg's standard luminance and chrominance tables (ITU T.81 Annex K), in zig-zag order, scaled to a quality as
/// jpeg_set_quality does.
let standardTables (quality: int) =
    let luminance =
        [| 16; 11; 10; 16; 24; 40; 51; 61; 12; 12; 14; 19; 26; 58; 60; 55; 14; 13; 16; 24; 40; 57; 69; 56; 14; 17; 22; 29; 51; 87; 80; 62
           18; 22; 37; 56; 68; 109; 103; 77; 24; 35; 55; 64; 81; 104; 113; 92; 49; 64; 78; 87; 103; 121; 120; 101; 72; 92; 95; 98; 112; 100; 103; 99 |]
    let chrominance = Array.init 64 (fun i -> let r, c = i / 8, i % 8 in if r < 4 && c < 4 then [| 17; 18; 24; 47; 18; 21; 26; 66; 24; 26; 56; 99; 47; 66; 99; 99 |][4 * r + c] else 99)
    let zigzag =
        [| 0; 1; 8; 16; 9; 2; 3; 10; 17; 24; 32; 25; 18; 11; 4; 5; 12; 19; 26; 33; 40; 48; 41; 34; 27; 20; 13; 6; 7; 14; 21; 28
           35; 42; 49; 56; 57; 50; 43; 36; 29; 22; 15; 23; 30; 37; 44; 51; 58; 59; 52; 45; 38; 31; 39; 46; 53; 60; 61; 54; 47; 55; 62; 63 |]
    let scale = if quality < 50 then 5000 / quality else 200 - 2 * quality
    let scaled (table: int[]) = Array.init 64 (fun k -> byte (min 255 (max 1 ((table[zigzag[k]] * scale + 50) / 100))))
    scaled luminance, scaled chrominance

/// The quantisation tables (by table id) and the components' sampling factors of a baseline JPEG.
let jpegSettings (jpeg: byte[]) =
    let parts = segments jpeg
    let tables =
        [ for marker, payload in parts do
              if marker = 0xDBuy then
                  // One or more 8-bit tables: Pq/Tq byte, then 64 values.
                  for start in 0..65 .. payload.Length - 65 do
                      yield int (payload[start] &&& 0x0Fuy), payload[start + 1 .. start + 64] ]
        |> Map.ofList
    let sampling =
        parts
        |> List.pick (fun (marker, payload) ->
            if marker = 0xC0uy then Some [ for c in 0 .. int payload[5] - 1 -> int (payload[7 + 3 * c] >>> 4), int (payload[7 + 3 * c] &&& 0x0Fuy) ] else None)
    tables, sampling

[<Tests>]
let tests =
    testList "Data.Resampling" [
        test "every filter gives Pillow's Image.resize byte for byte (halving, non-integer factors, one axis, upscaling)" {
            let root = golden.Force().RootElement
            let images = root.GetProperty "images"
            let mutable cases = 0
            for case in root.GetProperty("cases").EnumerateArray() do
                let image = images.GetProperty(case.GetProperty("image").GetString())
                let shape = intsOf (image.GetProperty "shape")
                let output = intsOf (case.GetProperty "output")
                let filter = ResampleFilter.Parse(case.GetProperty("filter").GetString())
                let pixels = bytesOf (image.GetProperty "pixels")
                let before = Array.copy pixels
                let ours = Resampling.resize filter pixels shape[0] shape[1] shape[2] output[1] output[2]
                let expected = bytesOf (case.GetProperty "expected")
                let differing = Array.map2 (fun (a: byte) (b: byte) -> abs (int a - int b)) ours expected |> Array.filter ((<>) 0) |> Array.length
                Expect.equal differing 0 $"{filter.Name} {shape[1]}×{shape[2]} → {output[1]}×{output[2]}: bytes that differ from Pillow's"
                Expect.sequenceEqual pixels before "the input is not modified"
                cases <- cases + 1
            Expect.equal cases 24 "2 images × 4 filters × 3 sizes"
        }

        test "filters parse by name; bad names and sizes are errors" {
            Expect.equal (ResampleFilter.Parse " BiLinear ") Bilinear "case-insensitive"
            let e = throwsWith<UsageException> (fun () -> ResampleFilter.Parse "nearest" |> ignore)
            Expect.stringContains e.Message "unknown resampling filter 'nearest': expected one of box, bilinear, bicubic, lanczos" "message"
            throwsWith<ArgumentException> (fun () -> Resampling.resize Box (Array.zeroCreate 10) 3 2 2 1 1 |> ignore) |> ignore
            throwsWith<ArgumentException> (fun () -> Resampling.resize Box (Array.zeroCreate 12) 3 2 2 0 1 |> ignore) |> ignore
        }

        test "JPEG encoding: libjpeg's standard tables at the quality, 4:2:0, the same pixels as Pillow's save(quality=75)" {
            let root = golden.Force().RootElement
            let pillow = bytesOf (root.GetProperty "jpeg")
            let image = root.GetProperty("images").GetProperty "a"
            let half = Resampling.resize Bilinear (bytesOf (image.GetProperty "pixels")) 3 16 16 8 8
            let ours = ImageFolder.encode SKEncodedImageFormat.Jpeg 75 half 3 8 8
            let tables, sampling = jpegSettings ours
            let luminance, chrominance = standardTables 75
            Expect.sequenceEqual tables[0] luminance "luminance table = IJG's at quality 75"
            Expect.sequenceEqual tables[1] chrominance "chrominance table = IJG's at quality 75"
            Expect.equal sampling [ 2, 2; 1, 1; 1, 1 ] "4:2:0"
            Expect.equal (jpegSettings pillow) (tables, sampling) "Pillow's settings"
            // Both decoded by SkiaSharp: only the entropy coding differs (SkiaSharp optimises its Huffman tables).
            let decoded (bytes: byte[]) =
                use dir = new TempDir()
                let path = dir.File "image.jpg"
                File.WriteAllBytes(path, bytes)
                let planar, _, _ = ImageFolder.decode path
                planar
            Expect.sequenceEqual (decoded ours) (decoded pillow) "the same pixels as Pillow's JPEG"
            let luminance90, _ = standardTables 90
            let tables90, _ = jpegSettings (ImageFolder.encode SKEncodedImageFormat.Jpeg 90 half 3 8 8)
            Expect.sequenceEqual tables90[0] luminance90 "quality 90"
        }

        test "the shared TinyImageNet-32's JPEGs have exactly these settings (quality 75, 4:2:0)" {
            match tinyImageNet32Folder () with
            | None -> ()
            | Some root ->
                let files = Directory.GetFiles(Path.Combine(root, "val", "images")) |> Array.sort |> Array.truncate 20
                let luminance, chrominance = standardTables 75
                for file in files do
                    let tables, sampling = jpegSettings (File.ReadAllBytes file)
                    Expect.sequenceEqual tables[0] luminance $"{file}: luminance"
                    Expect.sequenceEqual tables[1] chrominance $"{file}: chrominance"
                    Expect.equal sampling [ 2, 2; 1, 1; 1, 1 ] $"{file}: 4:2:0"
        }
    ]
