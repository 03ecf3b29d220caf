namespace Bake.Core

open System
open System.IO
open Google.Protobuf
open Bake.Core

/// <summary>A TensorBoard event file (<c>events.out.tfevents.*</c>): TFRecords of <c>tensorboard.Event</c> protocol
/// buffers, the first one naming the format (<c>brain.Event:2</c>).</summary>
/// <remarks>
/// <para>Each record is: the data length (uint64, little-endian), the masked CRC-32C of those 8 bytes (uint32), the
/// data, the masked CRC-32C of the data; masked = ((crc &gt;&gt;&gt; 15) | (crc &lt;&lt;&lt; 17)) + 0xa282ead8.</para>
/// <para>The Event and Summary messages and the CRC-32C are TorchSharp's (<c>Tensorboard.Event</c>,
/// <c>TorchSharp.Utils.CRC32C</c>). TorchSharp 0.107's own <c>SummaryWriter</c> is not used: it stores scalar wall
/// times as float32 (0 unless given; 128-second steps at today's Unix times) and the first record's wall time in
/// .NET ticks, and reopens the file for every value. Here wall times are float64 Unix seconds and the file stays
/// open, flushed after every record.</para>
/// </remarks>
[<Sealed>]
type EventFileWriter(folder: string) =
    static let mutable files = 0
    let path =
        let stamp = DateTimeOffset.UtcNow.ToUnixTimeSeconds()
        let n = Threading.Interlocked.Increment &files
        Path.Combine(folder, $"events.out.tfevents.{stamp}.{Environment.MachineName}.{Environment.ProcessId}.{n}")
    let stream =
        try
            Directory.CreateDirectory folder |> ignore
            new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read)
        with
        | :? IOException | :? UnauthorizedAccessException as e -> raise (BakeException($"cannot write TensorBoard events {path}: {e.Message}", e))
    let now () = float (DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()) / 1000.0
    let masked (bytes: byte[]) =
        let crc = TorchSharp.Utils.CRC32C.``process`` bytes
        ((crc >>> 15) ||| (crc <<< 17)) + 0xa282ead8u
    let write (event: Tensorboard.Event) =
        let data = event.ToByteArray()
        let length = BitConverter.GetBytes(uint64 data.Length)
        if not BitConverter.IsLittleEndian then Array.Reverse length
        let crc (bytes: byte[]) =
            let value = BitConverter.GetBytes(masked bytes)
            if not BitConverter.IsLittleEndian then Array.Reverse value
            value
        try
            for part in [ length; crc length; data; crc data ] do
                stream.Write(part, 0, part.Length)
            stream.Flush()
        with :? IOException as e -> raise (BakeException($"cannot write TensorBoard events {path}: {e.Message}", e))
    do write (Tensorboard.Event(WallTime = now (), FileVersion = "brain.Event:2"))

    /// <summary>The event file's full path.</summary>
    member _.Path = path

    /// <summary>Writes one event holding scalar values (tag, value) at a step. Non-finite values are left out
    /// (TensorBoard would plot them as gaps anyway).</summary>
    member _.WriteScalars(step: int64, values: (string * float) seq) =
        let summary = Tensorboard.Summary()
        for tag, value in values do
            if Double.IsFinite value then
                summary.Value.Add(Tensorboard.Summary.Types.Value(Tag = tag, SimpleValue = float32 value))
        if summary.Value.Count > 0 then write (Tensorboard.Event(WallTime = now (), Step = step, Summary = summary))

    interface IDisposable with
        member _.Dispose() = stream.Dispose()

/// <summary>TensorBoard logging of a training run into <c>runDir/tb</c>: every <paramref name="iterationPeriod"/>
/// iterations (and at the end of each epoch) the epoch's running-mean loss and top-1, the learning rate and the
/// images per second under <c>iteration/*</c> (step = global iteration); after each epoch the train loss and its
/// terms, train top-1, learning rate, seconds and, when evaluated, test top-1/top-5/NLL/ECE under <c>train/*</c>,
/// <c>test/*</c> and <c>lr</c> (step = epoch). A resumed run adds a new event file to the same folder.</summary>
/// <param name="runDir">The run directory.</param>
/// <param name="iterationPeriod">Iterations between iteration records (the run's LOG_PERIOD).</param>
/// <param name="enabled">False: record nothing and create no folder (LOGGING.TENSORBOARD = False).</param>
[<Sealed>]
type TensorBoardLog(runDir: string, iterationPeriod: int, enabled: bool) =
    let folder = Path.Combine(runDir, TensorBoardLog.FolderName)
    // Opened on the first record, so a run that fails before training leaves no empty event file.
    let mutable writer: EventFileWriter option = None
    let scalars step values =
        if enabled then
            let w =
                match writer with
                | Some w -> w
                | None ->
                    let w = new EventFileWriter(folder)
                    writer <- Some w
                    w
            w.WriteScalars(step, values)

    /// <summary>The folder inside a run directory that holds the event files.</summary>
    static member FolderName = "tb"

    /// <summary>The event file written so far, if any.</summary>
    member _.File = writer |> Option.map (fun w -> w.Path)

    /// <summary>Records what a training event carries (Started and CheckpointWritten carry no scalars).</summary>
    member _.Record(event: TrainingEvent) =
        match event with
        | Iteration (epoch, iteration, iterations, loss, top1, imagesPerSecond, lr) when
            iteration % max 1 iterationPeriod = 0 || iteration = iterations ->
            scalars
                (int64 (epoch - 1) * int64 iterations + int64 iteration)
                [ "iteration/loss_epoch_mean", loss
                  "iteration/top1_epoch_mean", top1
                  "iteration/lr", lr
                  "iteration/images_per_second", imagesPerSecond ]
        | EpochFinished row ->
            let test =
                match row.Test with
                | Some m -> [ "test/top1", m.Top1; "test/top5", m.Top5; "test/nll", m.Nll; "test/ece", m.Ece ]
                | None -> []
            scalars
                (int64 row.Epoch)
                ([ "train/loss", row.TrainLoss ]
                 @ (row.TrainTerms |> List.map (fun (name, value) -> "train/" + name, value))
                 @ [ "train/top1", row.TrainTop1; "lr", row.LearningRate; "epoch/seconds", row.Seconds ]
                 @ test)
        | _ -> ()

    /// <summary>This log as the callback <see cref="M:Bake.Core.Trainer.Run"/> takes.</summary>
    member this.AsAction() = Action<TrainingEvent>(this.Record)

    interface IDisposable with
        member _.Dispose() = writer |> Option.iter (fun w -> (w :> IDisposable).Dispose())
