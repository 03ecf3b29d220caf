namespace Bake.Core

open System
open System.Text.Json.Nodes
open TorchSharp
open Bake.Core.Data
open Bake.Core.Models

/// <summary>Clean, calibrated, adversarial and corrupted test metrics of one model.</summary>
[<NoComparison>]
type RobustnessReport =
    { Checkpoint: string
      Clean: EvalMetrics
      /// <summary>The temperature fitted on the run's held-out training images, and the test metrics after scaling.</summary>
      Calibrated: (float * EvalMetrics) option
      /// <summary>(ε in pixel units, metrics) for each FGSM strength.</summary>
      Fgsm: (float * EvalMetrics) list
      /// <summary>(corruption, severity 1–3, metrics).</summary>
      Corruptions: (Corruption * int * EvalMetrics) list }

/// <summary>Robustness and calibration evaluation of checkpoints (`bake eval --fgsm --corruption --calibrate`).</summary>
[<RequireQualifiedAccess>]
module Robustness =

    /// <summary>Evaluates a checkpoint (a checkpoint folder, or a run directory: its last checkpoint) on its run's test split: clean,
    /// after temperature scaling fitted on the run's held-out training images (TRAIN.HOLDOUT_PER_CLASS), under FGSM
    /// at each ε and under each corruption at severities 1–3.</summary>
    [<CompiledName("Evaluate")>]
    let evaluate (path: string, fgsm: float list, corruptions: Corruption list, calibrate: bool, batchSize: int, workers: int) : RobustnessReport =
        let opened = RunDirectory.openCheckpoint path
        let run = RunDirectory.requireRun opened
        let settings = run.Settings
        use dataset = RunDirectory.trainingData run
        use model = RunDirectory.loadModel opened
        let _, transform, _ = settings.Transforms dataset
        let logitsOf (split: ISplit) perturbation =
            Evaluation.logits (model, split, transform, dataset.Mean, dataset.Std, batchSize, torch.CPU, workers, perturbation)
        let metrics split perturbation temperature =
            let logits, labels = logitsOf split perturbation
            use logits = logits
            use labels = labels
            Evaluation.metricsOf (logits, labels, temperature)
        let clean = metrics dataset.Test Clean 1.0
        let calibrated =
            if not calibrate then None
            elif settings.HoldoutPerClass = 0 then
                raise (UsageException($"calibration needs held-out training images: the run {run.ConfigPath} has TRAIN.HOLDOUT_PER_CLASS = 0", "calibrate"))
            else
                let _, held = Setup.splitTraining (dataset.Train, settings.PerClass, settings.HoldoutPerClass, settings.Seed)
                let logits, labels = logitsOf held Clean
                use logits = logits
                use labels = labels
                let temperature = Evaluation.fitTemperature (logits, labels)
                Some(temperature, metrics dataset.Test Clean temperature)
        { Checkpoint = opened.Checkpoint
          Clean = clean
          Calibrated = calibrated
          Fgsm = fgsm |> List.map (fun epsilon -> epsilon, metrics dataset.Test (Fgsm epsilon) 1.0)
          Corruptions =
            [ for corruption in corruptions do
                  for severity in 1..3 -> corruption, severity, metrics dataset.Test (Corrupted(corruption, severity)) 1.0 ] }

    /// <summary>The report as JSON (written atomically by the command line's --out).</summary>
    [<CompiledName("ToJson")>]
    let toJson (report: RobustnessReport) : string =
        let metrics (m: EvalMetrics) =
            let o = JsonObject()
            o["top1"] <- RunFiles.jsonNumber m.Top1
            o["top5"] <- RunFiles.jsonNumber m.Top5
            o["nll"] <- RunFiles.jsonNumber m.Nll
            o["ece"] <- RunFiles.jsonNumber m.Ece
            o
        let root = JsonObject()
        root["checkpoint"] <- JsonValue.Create report.Checkpoint
        root["clean"] <- metrics report.Clean
        match report.Calibrated with
        | Some (t, m) ->
            let o = metrics m
            o["temperature"] <- JsonValue.Create t
            root["calibrated"] <- o
        | None -> ()
        root["fgsm"] <-
            JsonArray(report.Fgsm |> List.map (fun (e, m) -> let o = metrics m in o["epsilon"] <- JsonValue.Create e; o :> JsonNode) |> Array.ofList)
        root["corruptions"] <-
            JsonArray(report.Corruptions |> List.map (fun (c, s, m) ->
                let o = metrics m
                o["corruption"] <- JsonValue.Create c.Name
                o["severity"] <- JsonValue.Create s
                o :> JsonNode) |> Array.ofList)
        root.ToJsonString(Text.Json.JsonSerializerOptions(WriteIndented = true))
