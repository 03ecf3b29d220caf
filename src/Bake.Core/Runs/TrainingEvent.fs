namespace Bake.Core

/// <summary>What the trainer reports while it runs (the CLI draws a progress bar, the C# façade maps it to IProgress).</summary>
[<NoComparison>]
type TrainingEvent =
    /// <summary>Training started (or resumed): what was built, and the class names in label order.</summary>
    | Started of description: string * classes: string[]
    /// <summary>One SGD step finished: epoch (1-based), iteration (1-based) of iterations, running means.</summary>
    | Iteration of epoch: int * iteration: int * iterations: int * loss: float * top1: float * imagesPerSecond: float * learningRate: float
    /// <summary>An epoch finished (after evaluation when it was evaluated).</summary>
    | EpochFinished of EpochSummary
    /// <summary>A checkpoint was written.</summary>
    | CheckpointWritten of path: string
    /// <summary>Something the user should know that does not stop training (said once).</summary>
    | Warning of message: string
