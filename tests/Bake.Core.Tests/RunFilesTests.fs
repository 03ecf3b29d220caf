module Bake.Core.Tests.RunFilesTests

open Expecto
open Bake.Core

let private metrics nll =
    { Count = 20L; Top1 = 55.0; Top5 = 90.0; Nll = nll; Ece = 3.5; PerClassTop1 = [| 50.0; nan |] }

let private row test =
    { Epoch = 3; Iterations = 8; LearningRate = 0.05; TrainLoss = 1.25; TrainTerms = [ "ce", 1.0; "kd", 0.25 ]
      TrainTop1 = 61.5; Test = test; Seconds = 2.5 }

[<Tests>]
let tests =
    testList "RunFiles" [
        test "an epoch round-trips through its JSON, including NaN test metrics of a diverged model" {
            for test in [ None; Some(metrics 0.75); Some(metrics nan) ] do
                let json = (RunFiles.epochJson (row test)).ToJsonString()
                let back = RunFiles.epochOfJson (System.Text.Json.Nodes.JsonNode.Parse json)
                Expect.equal back.TrainTerms (row test).TrainTerms "terms in order"
                Expect.equal back.Epoch 3 "epoch"
                match test, back.Test with
                | None, None -> ()
                | Some expected, Some actual ->
                    Expect.equal actual.Top1 expected.Top1 "top-1"
                    Expect.equal (actual.Nll.ToString()) (expected.Nll.ToString()) "NLL (NaN stays NaN)"
                    Expect.isTrue (System.Double.IsNaN actual.PerClassTop1[1]) "a class without images stays NaN"
                | _ -> failtest "test metrics lost or invented"
        }
    ]
