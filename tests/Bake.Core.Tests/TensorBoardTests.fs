module Bake.Core.Tests.TensorBoardTests

open System
open System.IO
open System.Threading
open Expecto
open Bake.Core
open Bake.Core.Reporting
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.TrainerTests

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: independent of the writer's implementation.
let private crc32c (bytes: byte[]) : uint32 =
    let mutable crc = 0xFFFFFFFFu
    for b in bytes do
        crc <- crc ^^^ uint32 b
        for _ in 1 .. 8 do
            crc <- if crc &&& 1u = 1u then (crc >>> 1) ^^^ 0x82F63B78u else crc >>> 1
    crc ^^^ 0xFFFFFFFFu

let private masked (bytes: byte[]) =
    let crc = crc32c bytes
    ((crc >>> 15) ||| (crc <<< 17)) + 0xa282ead8u

/// Reads every TFRecord of an event file, checking the framing and both CRCs, and parses each as an Event.
let readEvents (path: string) : Tensorboard.Event list =
    let bytes = File.ReadAllBytes path
    let rec records offset acc =
        if offset = bytes.Length then List.rev acc
        else
            Expect.isGreaterThanOrEqual (bytes.Length - offset) 16 $"{path}: a record header at byte {offset}"
            let lengthBytes = bytes[offset .. offset + 7]
            let length = int (BitConverter.ToUInt64(lengthBytes, 0))
            Expect.equal (BitConverter.ToUInt32(bytes, offset + 8)) (masked lengthBytes) $"masked CRC of the length at byte {offset}"
            Expect.isLessThanOrEqual (offset + 16 + length) bytes.Length $"record at byte {offset} fits in the file"
            let data = bytes[offset + 12 .. offset + 11 + length]
            Expect.equal (BitConverter.ToUInt32(bytes, offset + 12 + length)) (masked data) $"masked CRC of the data at byte {offset}"
            records (offset + 16 + length) (Tensorboard.Event.Parser.ParseFrom data :: acc)
    records 0 []

/// (tag, step) → value of every scalar in the events.
let private scalars (events: Tensorboard.Event list) =
    [ for e in events do
          if not (isNull e.Summary) then
              for v in e.Summary.Value -> (v.Tag, e.Step), float v.SimpleValue ]
    |> Map.ofList

[<Tests>]
let tests =
    testSequenced <| testList "TensorBoard" [
        test "the reference CRC-32C of \"123456789\" is 0xE3069283" {
            Expect.equal (crc32c (Text.Encoding.ASCII.GetBytes "123456789")) 0xE3069283u "check value"
        }

        test "a tiny run writes an event file whose records parse and hold the summary's numbers" {
            withRunDir (fun dir ->
                let started = DateTimeOffset.UtcNow.ToUnixTimeSeconds()
                let outcome = runTiny dir [ "LOG_PERIOD=4" ] ignore CancellationToken.None
                let files = Directory.GetFiles(Path.Combine(dir, "tb"))
                Expect.hasLength files 1 "one event file"
                Expect.stringStarts (Path.GetFileName files[0]) "events.out.tfevents." "TensorBoard's file name"
                let events = readEvents files[0]
                Expect.equal events.Head.FileVersion "brain.Event:2" "the first record names the format"
                for e in events do
                    Expect.isTrue (e.WallTime >= float started - 1.0 && e.WallTime <= float (DateTimeOffset.UtcNow.ToUnixTimeSeconds()) + 1.0)
                        $"wall time {e.WallTime} is Unix seconds of this run"
                let values = scalars events
                for row in outcome.History do
                    let test = row.Test.Value
                    for tag, expected in
                        [ "train/loss", row.TrainLoss; "train/top1", row.TrainTop1; "lr", row.LearningRate
                          "test/top1", test.Top1; "test/top5", test.Top5; "test/nll", test.Nll; "test/ece", test.Ece ]
                        @ (row.TrainTerms |> List.map (fun (n, v) -> "train/" + n, v)) do
                        Expect.floatClose Accuracy.medium values[(tag, int64 row.Epoch)] expected $"{tag} at epoch {row.Epoch}"
                Expect.containsAll (values.Keys |> Seq.map fst) [ "train/ce"; "train/kd" ] "BAKE's loss terms"
                // 15 iterations per epoch, a record every 4 and at each epoch's end.
                let steps = values |> Map.toList |> List.choose (fun ((tag, step), _) -> if tag = "iteration/loss_epoch_mean" then Some step else None)
                Expect.sequenceEqual steps [ 4L; 8L; 12L; 15L; 19L; 23L; 27L; 30L ] "iteration steps")
        }

        test "LOGGING.TENSORBOARD False writes no tb folder" {
            withRunDir (fun dir ->
                runTiny dir [ "LOGGING.TENSORBOARD=False"; "OPTIM.MAX_EPOCH=1" ] ignore CancellationToken.None |> ignore
                Expect.isFalse (Directory.Exists(Path.Combine(dir, "tb"))) "no tb/")
        }

        test "an event writer's scalars leave non-finite values out" {
            withTempDir (fun dir ->
                let path =
                    use writer = new EventFileWriter(dir)
                    writer.WriteScalars(3L, [ "a", 1.5; "b", nan; "c", infinity ])
                    writer.WriteScalars(4L, [ "b", nan ])
                    writer.Path
                let events = readEvents path
                Expect.hasLength events 2 "the file-version record and one scalar record"
                Expect.equal (scalars events |> Map.toList) [ ("a", 3L), 1.5 ] "only the finite value")
        }
    ]
