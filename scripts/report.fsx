// Tables and figures of the reproduction study, regenerated from results/ (loaded by reproduce.fsx).
module Report

open System
open System.Globalization
open System.IO
open System.Text
open System.Text.Json.Nodes
open Bake.Core
open Bake.Core.Reporting

let private inv = CultureInfo.InvariantCulture

/// What one finished run measured.
type RunResult =
    { Name: string
      Method: string
      FinalTop1: float
      BestTop1: float
      BestEpoch: float
      FinalTrainTop1: float
      Nll: float
      Ece: float
      CalibratedEce: float
      Temperature: float
      Fgsm: (float * float) list
      Corruption: (string * int * float) list
      Iterations: int
      Seconds: float
      /// SGD steps done by the end of each epoch.
      CumulativeSteps: float[]
      Summary: RunSummary }

let read (dir: string) (name: string) (methodName: string) : RunResult option =
    let summaryPath = Path.Combine(dir, "summary.csv")
    let robustnessPath = Path.Combine(dir, "robustness.json")
    if not (File.Exists summaryPath && File.Exists robustnessPath) then None
    else
        let summary = Summary.read dir
        let robustness = JsonNode.Parse(File.ReadAllText robustnessPath)
        let evaluated = Array.zip summary.Epochs summary.TestTop1 |> Array.filter (snd >> Double.IsFinite)
        let bestEpoch, best = evaluated |> Array.maxBy snd
        let metric (node: JsonNode) (key: string) = node[key].GetValue<float>()
        let calibrated = robustness["calibrated"]
        Some
            { Name = name
              Method = methodName
              FinalTop1 = metric robustness["clean"] "top1"
              BestTop1 = best
              BestEpoch = bestEpoch
              FinalTrainTop1 = Array.last summary.TrainTop1
              Nll = metric robustness["clean"] "nll"
              Ece = metric robustness["clean"] "ece"
              CalibratedEce = (if isNull calibrated then nan else metric calibrated "ece")
              Temperature = (if isNull calibrated then nan else metric calibrated "temperature")
              Fgsm = [ for n in robustness["fgsm"].AsArray() -> metric n "epsilon", metric n "top1" ]
              Corruption = [ for n in robustness["corruptions"].AsArray() -> n["corruption"].GetValue<string>(), n["severity"].GetValue<int>(), metric n "top1" ]
              Iterations = summary.Iterations |> Array.sum |> int
              Seconds = summary.Seconds |> Array.sum
              CumulativeSteps = summary.Iterations |> Array.scan (+) 0.0 |> Array.tail
              Summary = summary }

let private pm (values: float[]) (digits: int) =
    let f (v: float) = v.ToString("F" + string digits, inv)
    if values.Length = 0 then "–" elif values.Length = 1 then f values[0] else $"{f (Statistics.mean values)} ± {f (Statistics.standardDeviation values)}"

/// A difference with its sign; one that rounds to zero is written "0.00", not "-+0.00" (.NET's two-section format
/// gives a negative value that rounds to zero the first section with a minus in front).
let private signed (delta: float) = delta.ToString("+0.00;-0.00;0.00", inv)

let private pValue (a: float[]) (b: float[]) =
    let _, _, p = Statistics.welch (a, b)
    if Double.IsNaN p then "–" elif p < 0.001 then "<0.001" else p.ToString("F3", inv)

/// Two FGSM step sizes are the same one (they pass through JSON and decimal text).
let sameStep (a: float) (b: float) = abs (a - b) < 1e-9

/// The FGSM step sizes every one of the runs was evaluated at, ascending (a study that gained step sizes has runs
/// with and without them until its finished runs are re-evaluated).
let commonFgsm (runs: RunResult list) =
    match runs |> List.map (fun r -> r.Fgsm |> List.map fst) with
    | [] -> []
    | first :: rest -> first |> List.filter (fun e -> rest |> List.forall (List.exists (sameStep e))) |> List.sort

/// One table row per method group: mean ± std over seeds, p-value of final top-1 against the reference group.
let methodTable (groups: (string * RunResult list) list) (reference: string) =
    let text = StringBuilder()
    let line (s: string) = text.AppendLine s |> ignore
    // The two smallest FGSM step sizes every run was evaluated at (a study chooses its own: 0.01 and 0.03 on 10
    // classes, 0.002 and 0.005 on TinyImageNet, where 0.01 already leaves about 1 %).
    let epsilons = groups |> List.collect snd |> commonFgsm |> List.truncate 2
    let fgsmHeader = epsilons |> List.map (fun e -> "FGSM ε=" + e.ToString(inv)) |> String.concat " | "
    line $"| method | seeds | steps | final top-1 | best top-1 | p (final vs vanilla) | train top-1 | NLL | ECE | ECE after T-scaling (T) | {fgsmHeader} | noise (mean of 3) | blur (mean of 3) | min/run |"
    line ("|---|---|---|---|---|---|---|---|---|---|" + String.replicate epsilons.Length "---|" + "---|---|---|")
    let referenceFinal = groups |> List.tryFind (fst >> (=) reference) |> Option.map (snd >> List.map (fun r -> r.FinalTop1) >> Array.ofList) |> Option.defaultValue [||]
    for name, runs in groups do
        let values f = runs |> List.map f |> Array.ofList
        let corruption kind = values (fun r -> r.Corruption |> List.filter (fun (c, _, _) -> c = kind) |> List.averageBy (fun (_, _, v) -> v))
        let fgsm epsilon = values (fun r -> r.Fgsm |> List.tryFind (fst >> sameStep epsilon) |> Option.map snd |> Option.defaultValue nan)
        let final = values (fun r -> r.FinalTop1)
        let temperatures = values (fun r -> r.Temperature)
        let p = if name = reference then "(reference)" else pValue final referenceFinal
        let noise, blur = corruption "gaussian-noise", corruption "gaussian-blur"
        let cells =
            [ yield! [ name; string runs.Length; string runs.Head.Iterations; pm final 2; pm (values (fun r -> r.BestTop1)) 2; p ]
              yield! [ pm (values (fun r -> r.FinalTrainTop1)) 1; pm (values (fun r -> r.Nll)) 3; pm (values (fun r -> r.Ece)) 2 ]
              yield $"{pm (values (fun r -> r.CalibratedEce)) 2} ({pm temperatures 2})"
              for e in epsilons -> pm (fgsm e) 2
              yield! [ pm noise 2; pm blur 2; pm (values (fun r -> r.Seconds / 60.0)) 1 ] ]
        line ("| " + String.concat " | " cells + " |")
    text.ToString()

/// The runs of each setting (a method or an ablation value): run names are SETTING-sSEED.
let groupBySetting (runs: RunResult list) = runs |> List.groupBy (fun r -> r.Name.Substring(0, r.Name.LastIndexOf "-s"))

let private isAblationStudy (study: string) = study.EndsWith "-ablations"

/// Mean test top-1 at each evaluated epoch over a group's seeds, with the std, against SGD steps.
let meanCurve (runs: RunResult list) =
    let epochs = runs.Head.CumulativeSteps
    let points =
        epochs
        |> Array.mapi (fun i epoch ->
            let values = runs |> List.map (fun r -> r.Summary.TestTop1[i]) |> List.filter Double.IsFinite |> Array.ofList
            epoch, values)
        |> Array.filter (fun (_, v) -> v.Length > 0)
    points |> Array.map fst, points |> Array.map (snd >> Statistics.mean), points |> Array.map (snd >> Statistics.standardDeviation)

let write (root: string) (results: string) (studies: (string * string * (string * string * int) list) list) =
    let docs = Path.Combine(root, "docs")
    let figures = Path.Combine(docs, "figures")
    Directory.CreateDirectory figures |> ignore
    let text = StringBuilder()
    let line (s: string) = text.AppendLine s |> ignore
    line "# Results: does BAKE help, where, and at what cost?"
    line ""
    line "Generated by `dotnet fsi scripts/reproduce.fsx report` from the run files under `results/` (config.yaml, summary.csv,"
    line "robustness.json of every run). Regenerate a study's runs with `dotnet fsi scripts/reproduce.fsx run STUDY` (it skips"
    line "finished runs). Accuracies are % on the full test set, mean ± std over seeds. *Final* is the last epoch's model;"
    line "*best* is the best evaluated epoch on the test set (the paper's protocol — optimistic, reported for comparison only)."
    line "p is Welch's two-sided t-test of final top-1 against vanilla. FGSM and corruptions are evaluated on the final model"
    line "(ε in [0, 1] pixel units, the table shows each study's two smallest; noise σ = 0.08/0.18/0.38, blur σ = 0.5/1.0/1.5 px)."
    line "T-scaling fits a temperature on held-out training images that were never trained on (100 per class in the 10-class"
    line "studies, 50 in TinyImageNet's data-limited ones, 10 in its full regime). *steps* = SGD iterations of the whole run."
    line ""
    // The hand-written reading of the numbers (docs/findings.md) goes first, then every generated table.
    let findings = Path.Combine(docs, "findings.md")
    if File.Exists findings then
        line (File.ReadAllText(findings).TrimEnd())
        line ""
    // Every study's finished runs, read once for the summary and the per-study sections.
    let finished =
        [ for study, description, runs in studies ->
              study, description, runs, runs |> List.choose (fun (name, methodName, _) -> read (Path.Combine(results, study, name)) name methodName) ]
    // Across studies: every method's final top-1 relative to vanilla, one row per dataset × regime.
    let methodStudies =
        [ for study, _, _, own in finished do
              // Method studies only: ablations have their own section, and a pilot without vanilla runs is no comparison.
              if not (isAblationStudy study) && own |> List.exists (fun r -> r.Method = "vanilla") then
                  yield study, groupBySetting own ]
    if not methodStudies.IsEmpty then
        let methods = [ "bake-m1"; "bake-m1-omega-0.9"; "bake-m3"; "label-smoothing"; "tfkd-reg"; "cskd"; "pskd"; "dlb" ]
        let finals study name =
            methodStudies |> List.find (fst >> (=) study) |> snd |> List.tryFind (fst >> (=) name)
            |> Option.map (snd >> List.map (fun r -> r.FinalTop1) >> Array.ofList) |> Option.defaultValue [||]
        line "## Summary across datasets and regimes"
        line ""
        line "Final test top-1 (%) of every method at equal SGD steps, mean ± std over seeds (n), and its difference from vanilla"
        line "with Welch's p. Per-study tables with every metric follow. Command: `dotnet fsi scripts/reproduce.fsx report` after"
        line "the studies' `run` commands below."
        line ""
        line ("| study | vanilla | " + String.concat " | " methods + " |")
        line ("|---" + String.replicate (methods.Length + 1) "|---" + "|")
        for study, _ in methodStudies do
            let vanilla = finals study "vanilla"
            let cell name =
                let values = finals study name
                if values.Length = 0 then "–"
                elif vanilla.Length = 0 then $"{pm values 2} ({values.Length})"
                else
                    let delta = signed (Statistics.mean values - Statistics.mean vanilla)
                    $"{pm values 2} ({values.Length}): Δ {delta}, p {pValue values vanilla}"
            line ($"| {study} | {pm vanilla 2} ({vanilla.Length}) | " + String.concat " | " (methods |> List.map cell) + " |")
        line ""
        let file = "summary-delta.png"
        let groups = methodStudies |> List.map fst |> Array.ofList
        let series =
            [ for name in methods ->
                  let deltas, stds =
                      groups
                      |> Array.map (fun study ->
                          let values, vanilla = finals study name, finals study "vanilla"
                          if values.Length = 0 || vanilla.Length = 0 then nan, nan
                          else Statistics.mean values - Statistics.mean vanilla, (if values.Length > 1 then Statistics.standardDeviation values else 0.0))
                      |> Array.unzip
                  name, deltas, stds ]
        Plots.groupedBars ("final test top-1 minus vanilla's (mean over seeds; bars: std of the method's seeds)", "Δ top-1 (points)", groups, series, Path.Combine(figures, file))
        line $"![final top-1 relative to vanilla](figures/{file})"
        line ""
        // The many-class studies against the one published column they can be set beside.
        let tinyStudies = methodStudies |> List.map fst |> List.filter (fun s -> s.StartsWith "tin32-")
        if not tinyStudies.IsEmpty then
            line "### TinyImageNet against the paper (Table 12)"
            line ""
            line "Top-1 **error** (%, lower is better) as the paper reports it: its ResNet-18 column for TinyImageNet (CS-KD's"
            line "pre-activation ResNet-18 on 64×64 images, 200 epochs, 3 seeds) beside every TinyImageNet-32 study here (final"
            line "epoch, mean ± std over seeds (n), difference from vanilla with Welch's p). The paper has no Tf-KD_reg, PS-KD or DLB"
            line "row and one ω per dataset."
            line ""
            let paper = [ "vanilla", 43.53; "label-smoothing", 43.09; "cskd", 41.62; "bake-m1", 41.71 ] |> Map.ofList
            let rows = "vanilla" :: methods
            line ("| method | paper (ResNet-18, 64×64): error, Δ | " + String.concat " | " tinyStudies + " |")
            line ("|---|---" + String.replicate tinyStudies.Length "|---" + "|")
            for name in rows do
                let paperCell =
                    match paper.TryFind name with
                    | Some e when name = "vanilla" -> e.ToString("0.00", inv)
                    | Some e -> $"""{e.ToString("0.00", inv)}, Δ {signed (e - paper["vanilla"])}"""
                    | None -> "–"
                let ours study =
                    let errors = finals study name |> Array.map (fun top1 -> 100.0 - top1)
                    let vanilla = finals study "vanilla" |> Array.map (fun top1 -> 100.0 - top1)
                    if errors.Length = 0 then "–"
                    elif name = "vanilla" || vanilla.Length = 0 then $"{pm errors 2} ({errors.Length})"
                    else
                        let delta = signed (Statistics.mean errors - Statistics.mean vanilla)
                        $"{pm errors 2} ({errors.Length}), Δ {delta}, p {pValue errors vanilla}"
                line ($"| {name} | {paperCell} | " + String.concat " | " (tinyStudies |> List.map ours) + " |")
            line ""
    for study, description, runs, own in finished do
        // An ablation study's default point (ω 0.5, τ 4, λ 1, M 1, closed form) and its vanilla reference are the
        // seed-1/2 runs of the matching methods study, which has the same base configuration.
        let runResults =
            if isAblationStudy study && not own.IsEmpty then
                let methods = study.Replace("-ablations", "-limited")
                let borrowed =
                    [ for seed in 1..2 do
                          for name, label in [ "vanilla", "vanilla"; "bake-m1", "omega-0.5" ] do
                              match read (Path.Combine(results, methods, $"{name}-s{seed}")) $"{label}-s{seed}" name with
                              | Some r -> yield r
                              | None -> () ]
                borrowed @ own
            else own
        line $"## {study}"
        line ""
        line description
        line ""
        line $"Runs finished: {own.Length} of {runs.Length}. Command: `dotnet fsi scripts/reproduce.fsx run {study}` (with"
        line "`FASHION_MNIST`/`CIFAR10`/`TINYIMAGENET32` pointing at the data, see the script's header), then `dotnet fsi scripts/reproduce.fsx report`."
        line ""
        if not runResults.IsEmpty then
            let groups = groupBySetting runResults
            line (methodTable groups "vanilla")
            let wall = runResults |> List.sumBy (fun r -> r.Seconds)
            line $"Wall time of the finished runs' training and evaluation epochs: {wall / 3600.0:F2} h on a 2-core machine (how the runs shared it: see above; robustness evaluation adds about 1 min per run; `results/{study}/wall-time.tsv` has the seconds of each driver invocation, several for a run resumed after a stop)."
            line ""
            let curves =
                groups
                |> List.filter (fun (g, _) -> g = "vanilla" || g = "bake-m1" || g = "bake-m3")
                |> List.map (fun (g, rs) -> let xs, ys, es = meanCurve rs in g, xs, ys, es)
            let figure (suffix: string) (title: string) (xLabel: string) series (alt: string) =
                if not (List.isEmpty series) then
                    let file = $"{study}-{suffix}.png"
                    Plots.lines ($"{study}: {title}", xLabel, "test top-1 (%)", series, Path.Combine(figures, file))
                    line $"![{alt}](figures/{file})"
                    line ""
            figure "top1" "test top-1 (mean ± std over seeds)" "SGD steps" curves "test top-1 curves"
            let robustness =
                groups
                |> List.filter (fun (g, _) -> g = "vanilla" || g = "bake-m1")
                |> List.map (fun (g, rs) ->
                    let eps = commonFgsm rs |> Array.ofList
                    let values = eps |> Array.map (fun e -> rs |> List.map (fun r -> r.Fgsm |> List.find (fst >> sameStep e) |> snd) |> Array.ofList)
                    g, Array.append [| 0.0 |] eps,
                    Array.append [| Statistics.mean (rs |> List.map (fun r -> r.FinalTop1) |> Array.ofList) |] (values |> Array.map Statistics.mean),
                    Array.append [| Statistics.standardDeviation (rs |> List.map (fun r -> r.FinalTop1) |> Array.ofList) |] (values |> Array.map Statistics.standardDeviation))
            figure "fgsm" "top-1 under FGSM" "ε (pixel units)" robustness "FGSM robustness"
            let omega =
                groups
                |> List.filter (fun (g, _) -> g.StartsWith "omega-")
                |> List.map (fun (g, rs) -> Double.Parse(g.Substring 6, inv), rs |> List.map (fun r -> r.FinalTop1) |> Array.ofList)
                |> List.sortBy fst
            if omega.Length > 1 then
                let xs = omega |> List.map fst |> Array.ofList
                let means = omega |> List.map (snd >> Statistics.mean) |> Array.ofList
                let stds = omega |> List.map (snd >> Statistics.standardDeviation) |> Array.ofList
                figure "omega" "final top-1 vs ω" "ω" [ ("BAKE", xs, means, stds) ] "accuracy vs omega"
    let path = Path.Combine(docs, "results.md")
    Bake.Core.Files.writeAllTextAtomic path (text.ToString())
    printfn "wrote %s" path
