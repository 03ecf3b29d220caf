/// Bad input ends in a clear error naming the file, key or value, never in an abort, a stack trace or silently wrong
/// data: configs, labels, pickles, image headers, checkpoints, settings libtorch cannot hold.
module Bake.Core.Tests.ReliabilityTests

open System
open System.IO
open System.Threading
open Expecto
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil
open Bake.Core.Tests.TrainerTests

let private problems (result: Result<'T, string list>) = match result with Ok _ -> [] | Error p -> p

/// A PNG file with a valid IHDR chunk (CRC included) claiming the given size, and no pixel data.
let private pngHeader (width: int) (height: int) =
    let crcTable =
        Array.init 256 (fun n ->
            let mutable c = uint32 n
            for _ in 1..8 do c <- if c &&& 1u <> 0u then 0xEDB88320u ^^^ (c >>> 1) else c >>> 1
            c)
    let crc (bytes: byte[]) =
        let mutable c = 0xFFFFFFFFu
        for b in bytes do c <- crcTable[int ((c ^^^ uint32 b) &&& 0xFFu)] ^^^ (c >>> 8)
        c ^^^ 0xFFFFFFFFu
    let chunk (kind: string) (data: byte[]) =
        let body = Array.append (Text.Encoding.ASCII.GetBytes kind) data
        Array.concat [ bigEndian data.Length; body; bigEndian (int (crc body)) ]
    let ihdr = Array.concat [ bigEndian width; bigEndian height; [| 8uy; 2uy; 0uy; 0uy; 0uy |] ]
    // An IDAT with an empty zlib stream: enough for a decoder to accept the header and allocate.
    let idat = [| 0x78uy; 0x9Cuy; 0x03uy; 0x00uy; 0x00uy; 0x00uy; 0x00uy; 0x01uy |]
    Array.concat [ [| 0x89uy; 0x50uy; 0x4Euy; 0x47uy; 0x0Duy; 0x0Auy; 0x1Auy; 0x0Auy |]; chunk "IHDR" ihdr; chunk "IDAT" idat; chunk "IEND" [||] ]

[<Tests>]
let tests =
    testList "Reliability" [
        // Sequenced: a no-GC region is the whole process's, so tests allocating (or training, which opens its own
        // regions) on other threads meanwhile would end it early or make this call the nested one.
        testSequenced <| test "Runtime.withoutCollections holds collections off during the action, nests, and always ends its region" {
            // Starting the region may collect once to make room; none may happen after that.
            let inside =
                Runtime.withoutCollections (fun () ->
                    let collections = System.GC.CollectionCount 0
                    let mode = System.Runtime.GCSettings.LatencyMode
                    // Nested: runs plainly inside the outer region.
                    let nested = Runtime.withoutCollections (fun () -> Array.init 1000 (fun _ -> Array.zeroCreate<byte> 1024) |> Array.length)
                    mode, nested, System.GC.CollectionCount 0 - collections)
            let mode, nested, during = inside
            Expect.equal mode System.Runtime.GCLatencyMode.NoGCRegion "in a no-GC region during the action"
            Expect.equal nested 1000 "the nested action's result"
            Expect.equal during 0 "no collection during 1 MB of allocations"
            Expect.notEqual System.Runtime.GCSettings.LatencyMode System.Runtime.GCLatencyMode.NoGCRegion "the region ended"
            Expect.throwsT<System.InvalidOperationException> (fun () -> Runtime.withoutCollections (fun () -> invalidOp "boom") |> ignore) "the action's exception passes"
            Expect.notEqual System.Runtime.GCSettings.LatencyMode System.Runtime.GCLatencyMode.NoGCRegion "and the region still ends"
        }

        testSequenced <| test "Runtime.withoutCollections shares one region between threads: it lasts until the last action in flight ends" {
            // Two trainings in one process: the step that entered first must not end the region under the other's feet.
            use entered = new System.Threading.ManualResetEventSlim false
            use release = new System.Threading.ManualResetEventSlim false
            // This thread enters first (it starts the region), the other enters second and leaves last.
            let other =
                Runtime.withoutCollections (fun () ->
                    let other =
                        System.Threading.Tasks.Task.Run(fun () ->
                            Runtime.withoutCollections (fun () ->
                                entered.Set()
                                release.Wait()
                                System.Runtime.GCSettings.LatencyMode))
                    entered.Wait()
                    other)
            let afterFirst = System.Runtime.GCSettings.LatencyMode
            release.Set()
            let otherAtItsEnd = other.Result
            Expect.equal afterFirst System.Runtime.GCLatencyMode.NoGCRegion "the region outlives the action that started it while another is in flight"
            Expect.equal otherAtItsEnd System.Runtime.GCLatencyMode.NoGCRegion "so the second action is covered to its end"
            Expect.notEqual System.Runtime.GCSettings.LatencyMode System.Runtime.GCLatencyMode.NoGCRegion "the last action to leave ends it"
        }

        test "Tensors.scalar keeps its scalars alive: the same object per value, usable after scopes and collections" {
            // A Scalar handed straight to an op could be finalized by a collection another thread starts while libtorch
            // still reads it ("Unknown scalar type" in a long run): the cache keeps every one reachable.
            let first = Tensors.scalar 0.3125
            Expect.isTrue (obj.ReferenceEquals(first, Tensors.scalar 0.3125)) "one Scalar per value"
            using (TorchSharp.torch.NewDisposeScope()) (fun _ -> Tensors.scalar 0.3125 |> ignore)
            System.GC.Collect()
            System.GC.WaitForPendingFinalizers()
            use ones = TorchSharp.torch.ones [| 3L |]
            use scaled = ones.mul (Tensors.scalar 0.3125)
            Expect.sequenceEqual (scaled.data<float32>().ToArray()) [| 0.3125f; 0.3125f; 0.3125f |] "still a valid scalar after a scope and a full collection"
        }

        testList "configs are untrusted input" [
            test "a second YAML document is refused, not dropped" {
                let found = problems (Configs.parseYaml "c.yaml" "TRAIN:\n  OMEGA: 0.3\n---\nTRAIN:\n  OMEGA: 0.9\n")
                Expect.exists found (fun p -> p.Contains "several YAML documents" && p.Contains "line 3") "refused, naming the line"
            }
            test "anchors and aliases are refused (an alias bomb cannot expand)" {
                let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                let watch = Diagnostics.Stopwatch.StartNew()
                let found = problems (Configs.parseYaml "bomb.yaml" bomb)
                Expect.exists found (fun p -> p.Contains "anchors") "refused"
                Expect.isLessThan watch.Elapsed.TotalSeconds 5.0 "at once"
            }
            test "a config larger than the limit is refused before it is parsed" {
                let found = problems (Configs.parseYaml "big.yaml" (String('#', Configs.MaxConfigChars + 1)))
                Expect.exists found (fun p -> p.Contains "too large for a config") "refused"
            }
            test "an empty section sets nothing; a config path that is a directory says so" {
                Expect.equal (Configs.parseYaml "c.yaml" "OPTIM:\nTRAIN:\n  OMEGA: 0.3\n") (Ok [ "TRAIN.OMEGA", "0.3" ]) "empty OPTIM:"
                withTempDir (fun dir ->
                    let e = throwsWith<UsageException> (fun () -> Configs.load (dir, []) |> ignore)
                    Expect.stringContains e.Message "is a directory" "names the mistake")
            }
            test "a learning rate float32 cannot hold is a configuration error, not an abort" {
                let found = problems (Settings.ofConfig (Configs.defaultJob [ "OPTIM.BASE_LR=1e39" ]))
                Expect.exists found (fun p -> p.Contains "OPTIM.BASE_LR = 1E+39" || p.Contains "OPTIM.BASE_LR = 1e+39" || p.Contains "float32") "refused"
            }
            test "DEVICE=cuda on the CPU build names what is missing" {
                if TorchSharp.torch.cuda.is_available () then skiptest "this machine has CUDA"
                withRunDir (fun dir ->
                    let e = throwsWith<UsageException> (fun () -> runTiny dir [ "DEVICE=cuda" ] ignore CancellationToken.None |> ignore)
                    Expect.stringContains e.Message "CUDA is not available" "says why"
                    Expect.stringContains e.Message "libtorch-cpu" "names the package in use")
            }
        ]

        testList "labels are validated against what the format declares" [
            test "an IDX label byte far above the others is refused, not a 201-class dataset" {
                withTempDir (fun dir ->
                    writeIdxDataset dir false 40 10 10
                    let labels = Path.Combine(dir, "train-labels-idx1-ubyte")
                    let bytes = File.ReadAllBytes labels
                    bytes[bytes.Length - 1] <- 200uy
                    File.WriteAllBytes(labels, bytes)
                    expectError (fun () -> Datasets.loadFolder dir None ImageFolder.defaultOptions |> ignore)
                        [ "train-labels-idx1-ubyte"; "class 10 has no training image"; "label 200" ])
            }
            test "a pickled label beyond 32 bits is not wrapped (2³² + 3 is not class 3)" {
                Expect.isNone (Pickle.asInts (PickleValue.List(ResizeArray [ PickleValue.Int 1L; PickleValue.Int(4294967296L + 3L) ]))) "refused"
                Expect.equal (Pickle.asInts (PickleValue.List(ResizeArray [ PickleValue.Int 1L; PickleValue.Int 3L ]))) (Some [| 1; 3 |]) "in range"
            }
            test "a pickle length near Int32.MaxValue is reported as truncated, not overflowed" {
                // Protocol 3: PROTO 3, BINBYTES with a 4-byte length of 0x7fffffff, then nothing.
                withTempDir (fun dir ->
                    let path = Path.Combine(dir, "data_batch_1")
                    File.WriteAllBytes(path, [| 0x80uy; 3uy; byte 'B'; 0xFFuy; 0xFFuy; 0xFFuy; 0x7Fuy |])
                    expectError (fun () -> Pickle.read path (File.ReadAllBytes path) |> ignore) [ "data_batch_1"; "truncated" ])
            }
        ]

        test "an image header claiming 100,000 × 100,000 pixels is refused before decoding" {
            withTempDir (fun dir ->
                let path = Path.Combine(dir, "huge.png")
                File.WriteAllBytes(path, pngHeader 100000 100000)
                expectError (fun () -> ImageFolder.decode path |> ignore) [ "huge.png" ]
                // Within what the decoder opens, the size check speaks before any pixel memory is allocated.
                File.WriteAllBytes(path, pngHeader 20000 20000)
                expectError (fun () -> ImageFolder.decode path |> ignore) [ "huge.png"; "20000×20000" ])
        }

        testSequenced <| testList "checkpoints from outside" [
            test "a state.json missing a field or with an absurd image shape is refused naming the field" {
                withRunDir (fun dir ->
                    runTiny dir [ "OPTIM.MAX_EPOCH=1" ] ignore CancellationToken.None |> ignore
                    let checkpoint = Checkpoints.ofPath dir
                    let statePath = Path.Combine(checkpoint, "state.json")
                    let original = File.ReadAllText statePath
                    let node = Text.Json.Nodes.JsonNode.Parse original
                    node.AsObject().Remove "classes" |> ignore
                    File.WriteAllText(statePath, node.ToJsonString())
                    expectError (fun () -> Checkpoints.readState checkpoint |> ignore) [ "state.json"; "\"classes\" is missing" ]
                    let node = Text.Json.Nodes.JsonNode.Parse original
                    node["image_shape"] <- Text.Json.Nodes.JsonArray(Text.Json.Nodes.JsonValue.Create 1, Text.Json.Nodes.JsonValue.Create 100000, Text.Json.Nodes.JsonValue.Create 100000)
                    File.WriteAllText(statePath, node.ToJsonString())
                    expectError (fun () -> Checkpoints.readState checkpoint |> ignore) [ "state.json"; "image_shape" ])
            }
            test "resuming with a garbage or missing optimizer.bin names the file" {
                withRunDir (fun dir ->
                    use cancellation = new CancellationTokenSource()
                    let stopAt event = match event with Iteration (1, 3, _, _, _, _, _) -> cancellation.Cancel() | _ -> ()
                    runTiny dir [] stopAt cancellation.Token |> ignore
                    let optimizer = Path.Combine(Checkpoints.ofPath dir, "optimizer.bin")
                    File.WriteAllBytes(optimizer, Text.Encoding.ASCII.GetBytes "not an optimizer state")
                    expectError (fun () -> runTiny dir [] ignore CancellationToken.None |> ignore) [ "optimizer.bin"; "cannot be read" ]
                    File.Delete optimizer
                    expectError (fun () -> runTiny dir [] ignore CancellationToken.None |> ignore) [ "optimizer.bin"; "missing" ])
            }
        ]
    ]
