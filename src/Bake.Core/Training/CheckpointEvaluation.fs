namespace Bake.Core

open TorchSharp
open Bake.Core.Data
open Bake.Core.Models

/// <summary>Evaluating trained models: a run's checkpoint, or foreign weights in a registered model.</summary>
[<RequireQualifiedAccess>]
module CheckpointEvaluation =

    /// <summary>Evaluates a checkpoint (a checkpoint folder, or a run directory: its last checkpoint, i.e. the final
    /// model) on the test split of a dataset (by default the one the run evaluated on; see
    /// <see cref="M:Bake.Core.RunDirectory.TestData"/>), normalised with the checkpoint's statistics as in training.</summary>
    [<CompiledName("EvaluateCheckpoint")>]
    let evaluateCheckpoint (path: string, datasetSpec: string option, workers: int, batchSize: int) : CheckpointState * EvalMetrics =
        let opened = RunDirectory.openCheckpoint path
        use model = RunDirectory.loadModel opened
        let dataset, transform = RunDirectory.testData (opened, datasetSpec)
        use dataset = dataset
        opened.State, Evaluation.evaluate (model, dataset, transform, batchSize, torch.CPU, workers)

    /// <summary>Evaluates weights from anywhere (a torchvision or official BAKE/pycls state dict, a .safetensors file)
    /// in a registered model on the test split of a dataset; the model is built for the dataset's classes and image
    /// shape.</summary>
    [<CompiledName("EvaluateWeights")>]
    let evaluateWeights (weights: string, modelName: string, datasetSpec: string, workers: int, batchSize: int) : string[] * EvalMetrics =
        use dataset = Datasets.load (datasetSpec, None)
        use model = Models.create (modelName, dataset.Classes.Length, dataset.ImageShape[0], dataset.ImageShape[1])
        Weights.load (model, weights)
        Classifier.useChannelsLast (model, true)
        dataset.Classes, Evaluation.evaluate (model, dataset, Transforms.forEvaluation dataset, batchSize, torch.CPU, workers)
