namespace Bake.Core

open Bake.Core.Data
open Bake.Core.Models

/// <summary><c>bake train --dry-run</c>: what a configuration would train, built without reading any data.</summary>
[<RequireQualifiedAccess>]
module DryRun =

    /// <summary>The input shape a dry run assumes without touching data: a named dataset's shape, else 3×IM_SIZE
    /// (224 when unset).</summary>
    let private assumedShape (settings: TrainingSettings) =
        let size fallback = if settings.ImageSize > 0 then settings.ImageSize else fallback
        match Datasets.known |> List.tryFind (fun (name, _) -> name = settings.Dataset.ToLowerInvariant()) with
        | Some(_, (channels, side)) -> channels, size side
        | None -> 3, size 224

    /// <summary>The batch layout in words.</summary>
    let private layout (settings: TrainingSettings) =
        let n = settings.BatchSize
        match settings.Method.Sampler with
        | Sampler.ClassPairs -> $"batch {n} = {settings.Anchors} anchors + {settings.Anchors} same-class partners"
        | Sampler.RepeatLastHalf -> $"batch {n} = {settings.Anchors} images of the last batch + {settings.Anchors} new"
        | Sampler.Standard when settings.IntraImages > 0 -> $"batch {n} = {settings.Anchors} anchors × {settings.IntraImages + 1} (per-class sampler, M = {settings.IntraImages})"
        | Sampler.Standard when settings.EqualStepsM > 0 -> $"batch {n}, shuffled, at BAKE's steps per epoch for M = {settings.EqualStepsM}"
        | Sampler.Standard -> $"batch {n}, shuffled"

    /// <summary>The resolved config, the method with its options and batch layout, and the model summary.</summary>
    [<CompiledName("Describe")>]
    let describe (config: Config, settings: TrainingSettings) : string =
        let channels, size = assumedShape settings
        let classes = if settings.Classes > 0 then settings.Classes else 10
        use model = Models.create (settings.Model, classes, channels, size)
        let classesNote = if settings.Classes > 0 then "" else " (MODEL.NUM_CLASSES = 0: taken from the dataset at training time; shown with 10)"
        let format = settings.Format |> Option.map (fun f -> f.Name) |> Option.defaultValue "auto"
        String.concat "\n"
            [ Configs.toYaml config
              $"method: {settings.Method.Name} ({settings.Method.Options}); {layout settings}; epochs {settings.Epochs}; base lr {settings.Schedule.BaseLr}"
              $"data: {settings.Dataset} (format {format})"
              $"model: {settings.Model}, input {channels}×{size}×{size}, {classes} classes{classesNote}"
              Models.describe model ]
