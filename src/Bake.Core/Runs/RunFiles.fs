namespace Bake.Core

open System
open System.Globalization
open System.IO
open System.Text
open System.Text.Json
open System.Text.Json.Nodes

/// <summary>One row of summary.csv: the state of training after an epoch.</summary>
[<NoComparison>]
type EpochSummary =
    {
        /// <summary>1-based epoch number.</summary>
        Epoch: int
        /// <summary>SGD steps in this epoch.</summary>
        Iterations: int
        /// <summary>Learning rate at the start of the epoch.</summary>
        LearningRate: float
        /// <summary>Mean total training loss over the epoch's iterations.</summary>
        TrainLoss: float
        /// <summary>Mean of each named loss term (unweighted), in the loss's order.</summary>
        TrainTerms: (string * float) list
        /// <summary>Training top-1 accuracy (%) on the batches as trained (augmented).</summary>
        TrainTop1: float
        /// <summary>Test metrics, when this epoch was evaluated.</summary>
        Test: EvalMetrics option
        /// <summary>Wall-clock seconds of the epoch (training and evaluation).</summary>
        Seconds: float
    }

/// <summary>One run's per-epoch record, read from <c>summary.csv</c> in its run directory.</summary>
/// <remarks>Each array has one entry per epoch (one per data row of the file); a value may be NaN when the engine
/// did not measure it that epoch.</remarks>
[<NoComparison>]
type RunSummary =
    {
        /// <summary>The full path of the <c>summary.csv</c> file.</summary>
        Path: string
        /// <summary>The run directory's folder name (the legend of comparisons).</summary>
        Name: string
        /// <summary>The <c>epoch</c> column.</summary>
        Epochs: float[]
        /// <summary>The <c>lr</c> column: the learning rate of each epoch.</summary>
        LearningRates: float[]
        /// <summary>The <c>train_loss</c> column: the total training loss.</summary>
        TrainLoss: float[]
        /// <summary>The loss's named terms in file order, e.g. <c>("ce", …); ("kd", …)</c> from
        /// <c>train_ce,train_kd</c>: every <c>train_*</c> column other than the loss and the accuracies.</summary>
        Terms: (string * float[]) list
        /// <summary>The <c>train_top1</c> column, in percent.</summary>
        TrainTop1: float[]
        /// <summary>The <c>test_top1</c> column, in percent (NaN where the epoch was not evaluated).</summary>
        TestTop1: float[]
        /// <summary>The <c>iterations</c> column: SGD steps per epoch.</summary>
        Iterations: float[]
        /// <summary>The <c>seconds</c> column: wall-clock seconds per epoch.</summary>
        Seconds: float[]
    }

/// <summary>Reading the per-epoch <c>summary.csv</c> that <see cref="M:Bake.Core.RunFiles.WriteSummary"/> writes into a run directory.</summary>
/// <remarks>Format: a header, then one row per epoch, with the columns <c>epoch,iterations,lr,train_loss,
/// train_&lt;term&gt;...,train_top1,test_top1,test_top5,test_nll,test_ece,seconds</c>; accuracies in percent.
/// Columns are found by name; only the ones the figures use are required.</remarks>
[<RequireQualifiedAccess>]
module Summary =

    /// <summary>The file name of the per-epoch summary inside a run directory.</summary>
    [<Literal>]
    let FileName = "summary.csv"

    let private required = [ "epoch"; "iterations"; "lr"; "train_loss"; "train_top1"; "test_top1"; "seconds" ]

    /// <summary>Reads <c>runDir/summary.csv</c>.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The directory or file is missing, the file has no header or lacks
    /// a required column (epoch, iterations, lr, train_loss, train_top1, test_top1, seconds), or a cell is not a number; the message
    /// names the file and line.</exception>
    [<CompiledName("Read")>]
    let read (runDir: string) : RunSummary =
        let dir = Path.GetFullPath runDir
        if not (Directory.Exists dir) then raise (BakeException $"{dir}: run directory not found")
        let path = Path.Combine(dir, FileName)
        if not (File.Exists path) then
            raise (BakeException $"{dir}: no {FileName} in this run directory (the training engine writes it after each epoch)")
        let table = Interop.Csv.readTable path
        let header =
            match table.Header with
            | Some names -> names |> Array.map (fun n -> n.Trim().ToLowerInvariant())
            | None -> raise (BakeException $"{path}: line 1: expected a header naming the columns (epoch,iterations,lr,train_loss,...), found numbers")
        let column (name: string) =
            match Array.tryFindIndex ((=) name) header with
            | Some index -> Array.init table.Rows (fun row -> table.Values[row * table.Columns + index])
            | None ->
                let found = String.Join(",", header)
                let expected = String.Join(",", required)
                raise (BakeException $"{path}: line 1: the header has no '{name}' column (found: {found}; expected at least {expected})")
        let columns = required |> List.map (fun name -> name, column name) |> Map.ofList
        let terms =
            header
            |> Array.filter (fun name -> name.StartsWith "train_" && name <> "train_loss" && not (name.StartsWith "train_top"))
            |> Array.map (fun name -> name.Substring "train_".Length, column name)
            |> List.ofArray
        { Path = path
          Name = Path.GetFileName(Path.TrimEndingDirectorySeparator dir)
          Epochs = columns["epoch"]
          LearningRates = columns["lr"]
          TrainLoss = columns["train_loss"]
          Terms = terms
          TrainTop1 = columns["train_top1"]
          TestTop1 = columns["test_top1"]
          Iterations = columns["iterations"]
          Seconds = columns["seconds"] }

/// <summary>The files of a run directory: config.yaml, log.jsonl, summary.csv (pycls + timm conventions).</summary>
[<RequireQualifiedAccess>]
module RunFiles =

    /// <summary>The log's file name in a run directory: one JSON object per log window and per epoch.</summary>
    [<Literal>]
    let LogFile = "log.jsonl"
    let private invariant = CultureInfo.InvariantCulture
    let private number (v: float) = v.ToString("R", invariant)

    /// <summary>The header of summary.csv for the given loss-term names.</summary>
    [<CompiledName("SummaryHeader")>]
    let summaryHeader (terms: string list) : string =
        [ "epoch"; "iterations"; "lr"; "train_loss" ] @ (terms |> List.map (fun t -> "train_" + t))
        @ [ "train_top1"; "test_top1"; "test_top5"; "test_nll"; "test_ece"; "seconds" ]
        |> String.concat ","

    /// <summary>One CSV row; <c>nan</c> in the test cells of epochs that were not evaluated (TRAIN.EVAL_PERIOD).</summary>
    [<CompiledName("SummaryRow")>]
    let summaryRow (row: EpochSummary) : string =
        let test =
            match row.Test with
            | Some m -> [ number m.Top1; number m.Top5; number m.Nll; number m.Ece ]
            | None -> [ "nan"; "nan"; "nan"; "nan" ]
        [ string row.Epoch; string row.Iterations; number row.LearningRate; number row.TrainLoss ]
        @ (row.TrainTerms |> List.map (snd >> number))
        @ [ number row.TrainTop1 ] @ test @ [ row.Seconds.ToString("F3", invariant) ]
        |> String.concat ","

    /// <summary>Writes summary.csv atomically from the whole history (read back by <see cref="M:Bake.Core.Summary.Read"/>).</summary>
    [<CompiledName("WriteSummary")>]
    let writeSummary (path: string) (history: EpochSummary list) : unit =
        let terms = match history with first :: _ -> first.TrainTerms |> List.map fst | [] -> []
        let text = StringBuilder().AppendLine(summaryHeader terms)
        for row in history do text.AppendLine(summaryRow row) |> ignore
        Files.writeAllTextAtomic path (text.ToString())

    /// <summary>Appends one JSON object as a line to log.jsonl.</summary>
    [<CompiledName("AppendLog")>]
    let appendLog (path: string) (record: JsonObject) : unit =
        try File.AppendAllText(path, record.ToJsonString() + "\n")
        with :? IOException | :? UnauthorizedAccessException as e -> raise (BakeException($"cannot append to {path}: {e.Message}", e))

    /// <summary>A float as JSON; null for NaN and infinities, which JSON cannot hold (System.Text.Json throws on
    /// them, and a diverged model's test NLL is NaN: writing it must not stop the run).</summary>
    [<CompiledName("JsonNumber")>]
    let jsonNumber (v: float) : JsonNode = if Double.IsFinite v then JsonValue.Create v else null

    /// <summary>Reads back a number written by jsonNumber: null is NaN.</summary>
    let private numberOf (node: JsonNode) : float = if isNull node then nan else node.GetValue<float>()

    let private metricsJson (m: EvalMetrics) =
        JsonObject(
            [ Collections.Generic.KeyValuePair<string, JsonNode>("count", JsonValue.Create m.Count)
              Collections.Generic.KeyValuePair("top1", jsonNumber m.Top1)
              Collections.Generic.KeyValuePair("top5", jsonNumber m.Top5)
              Collections.Generic.KeyValuePair("nll", jsonNumber m.Nll)
              Collections.Generic.KeyValuePair("ece", jsonNumber m.Ece)
              Collections.Generic.KeyValuePair("per_class_top1", JsonArray(m.PerClassTop1 |> Array.map jsonNumber)) ])

    let private metricsOf (node: JsonNode) : EvalMetrics =
        { Count = node["count"].GetValue<int64>(); Top1 = numberOf node["top1"]; Top5 = numberOf node["top5"]
          Nll = numberOf node["nll"]; Ece = numberOf node["ece"]
          PerClassTop1 = node["per_class_top1"].AsArray() |> Seq.map numberOf |> Array.ofSeq }

    /// <summary>An epoch summary as JSON (used in log.jsonl and in checkpoints).</summary>
    [<CompiledName("EpochJson")>]
    let epochJson (row: EpochSummary) : JsonObject =
        let o = JsonObject()
        o["phase"] <- JsonValue.Create "epoch"
        o["epoch"] <- JsonValue.Create row.Epoch
        o["iterations"] <- JsonValue.Create row.Iterations
        o["lr"] <- JsonValue.Create row.LearningRate
        o["train_loss"] <- JsonValue.Create row.TrainLoss
        let terms = JsonObject()
        for name, value in row.TrainTerms do terms[name] <- JsonValue.Create value
        o["train_terms"] <- terms
        o["term_order"] <- JsonArray(row.TrainTerms |> List.map (fun (n, _) -> JsonValue.Create n :> JsonNode) |> Array.ofList)
        o["train_top1"] <- JsonValue.Create row.TrainTop1
        o["test"] <- (match row.Test with Some m -> metricsJson m :> JsonNode | None -> null)
        o["seconds"] <- JsonValue.Create row.Seconds
        o

    /// <summary>Reads back <see cref="M:Bake.Core.RunFiles.EpochJson"/>.</summary>
    [<CompiledName("EpochOfJson")>]
    let epochOfJson (node: JsonNode) : EpochSummary =
        let terms = node["train_terms"]
        { Epoch = node["epoch"].GetValue<int>(); Iterations = node["iterations"].GetValue<int>()
          LearningRate = node["lr"].GetValue<float>(); TrainLoss = node["train_loss"].GetValue<float>()
          TrainTerms = node["term_order"].AsArray() |> Seq.map (fun n -> let name = n.GetValue<string>() in name, terms[name].GetValue<float>()) |> List.ofSeq
          TrainTop1 = node["train_top1"].GetValue<float>()
          Test = (match node["test"] with null -> None | m -> Some(metricsOf m))
          Seconds = node["seconds"].GetValue<float>() }
