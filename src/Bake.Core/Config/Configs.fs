namespace Bake.Core

open System
open System.Globalization
open System.IO
open System.Text
open YamlDotNet.RepresentationModel

/// <summary>The configuration schema: the general keys (<see cref="T:Bake.Core.Keys"/>) and every method's own keys
/// (<see cref="T:Bake.Core.Methods"/>), each declared once with its type, default and meaning.</summary>
[<RequireQualifiedAccess>]
module ConfigSchema =

    /// <summary>Every key Bake accepts.</summary>
    let keys: ConfigKey list = Keys.all @ Methods.keys

    /// <summary>The keys by name.</summary>
    let byName: Map<string, ConfigKey> = keys |> List.map (fun k -> k.Key, k) |> Map.ofList

    /// <summary>The default configuration.</summary>
    let defaults: Config = { Values = keys |> List.map (fun k -> k.Key, k.Default) |> Map.ofList; Sources = [ "defaults" ] }

/// <summary>Reading, overriding, validating and writing configurations (pycls YAML schema).</summary>
[<RequireQualifiedAccess>]
module Configs =

    let private invariant = CultureInfo.InvariantCulture

    /// <summary>The largest config text read (1 MiB; the official configs are about 1 KB).</summary>
    [<Literal>]
    let MaxConfigChars = 1048576

    /// <summary>The valid key closest to an unknown one.</summary>
    [<CompiledName("NearestKey")>]
    let nearestKey (unknown: string) : string =
        Spelling.nearest (ConfigSchema.keys |> List.map (fun k -> k.Key), unknown.ToUpperInvariant())

    let private unknownKey (where: string) (name: string) =
        $"{where}: unknown key {name} (did you mean {nearestKey name}?)"

    let private parseScalar (where: string) (name: string) (spec: ConfigKey) (text: string) : Result<ConfigValue, string> =
        let expected = spec.Default
        let bad what = Error $"{where}: {name} = '{text}' is invalid: expected {what}"
        let number (s: string) =
            match Double.TryParse(s.Trim(), NumberStyles.Float, invariant) with
            | true, v -> Some v
            | _ -> None
        let integer (s: string) =
            match Int32.TryParse(s.Trim(), NumberStyles.Integer, invariant) with
            | true, v -> Some v
            | _ -> None
        let items (s: string) =
            let s = s.Trim()
            let inner = if s.StartsWith "[" && s.EndsWith "]" then s.Substring(1, s.Length - 2) else s
            if String.IsNullOrWhiteSpace inner then [] else inner.Split(',') |> List.ofArray
        match expected with
        | Flag _ ->
            match text.Trim().ToLowerInvariant() with
            | "true" | "yes" | "on" -> Ok(Flag true)
            | "false" | "no" | "off" -> Ok(Flag false)
            | _ -> bad "True or False"
        | Integer _ -> integer text |> Option.map Integer |> Option.map Ok |> Option.defaultValue (bad "an integer")
        | Number _ -> number text |> Option.map Number |> Option.map Ok |> Option.defaultValue (bad "a number")
        | Text _ when spec.Choices.IsEmpty -> Ok(Text(text.Trim()))
        | Text _ ->
            // A choice key: the canonical spelling of the name, or the list of accepted names.
            match spec.Choices |> List.tryFind (fun c -> String.Equals(c, text.Trim(), StringComparison.OrdinalIgnoreCase)) with
            | Some choice -> Ok(Text choice)
            | None ->
                let shown = spec.Choices |> List.map (fun c -> if c = "" then "'' (empty)" else c) |> String.concat ", "
                bad $"one of {shown}"
        | Integers _ ->
            let parsed = items text |> List.map integer
            if parsed |> List.forall Option.isSome then Ok(Integers(parsed |> List.map Option.get)) else bad "a list of integers, e.g. [1, 2, 2, 2]"
        | Numbers _ ->
            let parsed = items text |> List.map number
            if parsed |> List.forall Option.isSome then Ok(Numbers(parsed |> List.map Option.get)) else bad "a list of numbers, e.g. [0.25, 0.25]"

    let private nodeText (node: YamlNode) =
        match node with
        | :? YamlScalarNode as scalar -> scalar.Value
        | :? YamlSequenceNode as sequence ->
            "[" + (sequence.Children |> Seq.map (fun c -> match c with :? YamlScalarNode as s -> s.Value | other -> string other) |> String.concat ", ") + "]"
        | other -> string other

    /// <summary>Applies key/value pairs (already flattened to SECTION.KEY) to a config, collecting every problem.</summary>
    let private applyPairs (where: string) (config: Config) (pairs: (string * string) list) : Result<Config, string list> =
        let problems = ResizeArray<string>()
        let mutable values = config.Values
        for name, text in pairs do
            match Map.tryFind name ConfigSchema.byName with
            | None -> problems.Add(unknownKey where name)
            | Some spec ->
                match parseScalar where name spec text with
                | Ok value -> values <- Map.add name value values
                | Error problem -> problems.Add problem
        if problems.Count = 0 then Ok { Values = values; Sources = config.Sources @ [ where ] } else Error(List.ofSeq problems)

    /// <summary>Flattens pycls YAML (sections of keys, plus top-level keys) into SECTION.KEY pairs.</summary>
    [<CompiledName("ParseYaml")>]
    let parseYaml (where: string) (text: string) : Result<(string * string) list, string list> =
        // A config file is untrusted input: its size is bounded, and it is scanned as a stream of events (linear time)
        // before it is loaded, refusing what pycls configs never contain and what could make loading unbounded or
        // silently partial: anchors and aliases (an alias "bomb" expands exponentially) and further documents.
        let scan () =
            let parser = YamlDotNet.Core.Parser(new StringReader(text))
            let mutable documents = 0
            let mutable problem = None
            while problem.IsNone && parser.MoveNext() do
                match parser.Current with
                | :? YamlDotNet.Core.Events.DocumentStart -> documents <- documents + 1
                | :? YamlDotNet.Core.Events.AnchorAlias as alias ->
                    problem <- Some $"{where}: line {alias.Start.Line}: YAML aliases (*{alias.Value}) are not supported in configs"
                | :? YamlDotNet.Core.Events.NodeEvent as node when not node.Anchor.IsEmpty ->
                    problem <- Some $"{where}: line {node.Start.Line}: YAML anchors (&{node.Anchor}) are not supported in configs"
                | _ -> ()
                if documents > 1 && problem.IsNone then
                    problem <- Some $"{where}: holds several YAML documents (a second one starts at line {parser.Current.Start.Line}): a config is one document"
            problem
        if text.Length > MaxConfigChars then
            Error [ $"{where}: {text.Length:N0} characters is too large for a config (at most {MaxConfigChars:N0})" ]
        else
        try
            match scan () with
            | Some problem -> Error [ problem ]
            | None ->
            let stream = YamlStream()
            stream.Load(new StringReader(text))
            if stream.Documents.Count = 0 then Ok []
            else
                match stream.Documents[0].RootNode with
                | :? YamlMappingNode as root ->
                    let pairs = ResizeArray()
                    let problems = ResizeArray()
                    for entry in root.Children do
                        let section = nodeText entry.Key
                        match entry.Value with
                        | :? YamlMappingNode as inner ->
                            for item in inner.Children do
                                match item.Value with
                                | :? YamlMappingNode -> problems.Add $"{where}: {section}.{nodeText item.Key} is a nested section; Bake's schema has two levels"
                                | value -> pairs.Add((section + "." + nodeText item.Key, nodeText value))
                        | :? YamlScalarNode as empty when String.IsNullOrEmpty empty.Value && ConfigSchema.keys |> List.exists (fun k -> k.Key.StartsWith(section + ".")) ->
                            () // An empty section (`OPTIM:` with nothing under it) sets nothing.
                        | value -> pairs.Add((section, nodeText value))
                    if problems.Count = 0 then Ok(List.ofSeq pairs) else Error(List.ofSeq problems)
                | :? YamlScalarNode as scalar when String.IsNullOrEmpty scalar.Value -> Ok []
                | _ -> Error [ $"{where}: expected a mapping of sections (MODEL:, OPTIM:, TRAIN:, …) at the top level" ]
        with :? YamlDotNet.Core.YamlException as e ->
            Error [ $"{where}: invalid YAML at line {e.Start.Line}, column {e.Start.Column}: {e.Message}" ]

    /// <summary>Applies a YAML document to a config.</summary>
    [<CompiledName("ApplyYaml")>]
    let applyYaml (where: string) (text: string) (config: Config) : Result<Config, string list> =
        parseYaml where text |> Result.bind (applyPairs where config)

    /// <summary>Applies <c>KEY=VALUE</c> overrides (the <c>--set</c> options).</summary>
    [<CompiledName("ApplyOverrides")>]
    let applyOverrides (overrides: string list) (config: Config) : Result<Config, string list> =
        let parsed =
            overrides
            |> List.map (fun o ->
                match o.IndexOf '=' with
                | i when i > 0 -> Ok(o.Substring(0, i).Trim().ToUpperInvariant(), o.Substring(i + 1))
                | _ -> Error $"override '{o}': expected KEY=VALUE, e.g. TRAIN.OMEGA=0.3")
        let problems = parsed |> List.choose (function Error e -> Some e | Ok _ -> None)
        if not problems.IsEmpty then Error problems
        else applyPairs "overrides" config (parsed |> List.choose (function Ok p -> Some p | Error _ -> None))

    /// <summary>Reads a config file on top of the defaults.</summary>
    /// <exception cref="T:Bake.Core.UsageException">The file is missing or invalid; every problem listed.</exception>
    [<CompiledName("Load")>]
    let load (path: string, overrides: string list) : Config =
        if Directory.Exists path then raise (UsageException $"config file {path} is a directory: give the YAML file")
        if not (File.Exists path) then raise (UsageException $"config file {path} does not exist")
        if FileInfo(path).Length > int64 (4 * MaxConfigChars) then
            raise (UsageException $"config file {path} is {FileInfo(path).Length:N0} bytes: too large for a config (at most {MaxConfigChars:N0} characters)")
        let text = File.ReadAllText path
        match applyYaml path text ConfigSchema.defaults |> Result.bind (applyOverrides overrides) with
        | Ok config -> config
        | Error problems -> raise (UsageException("invalid configuration:\n  " + String.concat "\n  " problems))

    /// <summary>The default job: BAKE with the small CNN on the embedded Fashion-MNIST subset
    /// (configs/embedded/BAKE-cnn.yaml, compiled into the library).</summary>
    [<CompiledName("DefaultJob")>]
    let defaultJob (overrides: string list) : Config =
        use stream = typeof<ConfigKey>.Assembly.GetManifestResourceStream "Bake.Core.DefaultJob.yaml"
        use reader = new StreamReader(stream)
        match applyYaml "configs/embedded/BAKE-cnn.yaml" (reader.ReadToEnd()) ConfigSchema.defaults |> Result.bind (applyOverrides overrides) with
        | Ok config -> config
        | Error problems -> raise (UsageException("invalid configuration:\n  " + String.concat "\n  " problems))

    let private format (value: ConfigValue) =
        let number (v: float) =
            let s = v.ToString("R", invariant)
            if s.Contains "." || s.Contains "E" || s.Contains "N" || s.Contains "I" then s else s + ".0"
        match value with
        | Flag v -> if v then "True" else "False"
        | Integer v -> v.ToString invariant
        | Number v -> number v
        | Text v -> if v = "" then "''" elif v.IndexOfAny [| ':'; '#'; '['; ']'; '{'; '}'; ','; '\''; '"' |] >= 0 || v <> v.Trim() then "'" + v.Replace("'", "''") + "'" else v
        | Integers v -> "[" + (v |> List.map (fun i -> i.ToString invariant) |> String.concat ", ") + "]"
        | Numbers v -> "[" + (v |> List.map number |> String.concat ", ") + "]"

    /// <summary>The resolved config as pycls-style YAML, every key with its value, grouped by section (sections and
    /// keys in schema order: each section where its first key is declared).</summary>
    [<CompiledName("ToYaml")>]
    let toYaml (config: Config) : string =
        let text = StringBuilder()
        text.AppendLine("# Resolved Bake configuration (" + String.concat " → " config.Sources + ")") |> ignore
        let sectionOf (key: string) = match key.IndexOf '.' with -1 -> "" | i -> key.Substring(0, i)
        for section, specs in ConfigSchema.keys |> List.groupBy (fun spec -> sectionOf spec.Key) do
            if section <> "" then text.AppendLine(section + ":") |> ignore
            for spec in specs do
                let value = format config.Values[spec.Key]
                if section = "" then text.AppendLine($"{spec.Key}: {value}") |> ignore
                else text.AppendLine($"  {spec.Key.Substring(section.Length + 1)}: {value}") |> ignore
        text.ToString()

    /// <summary>A run's identity: SHA-256 of the values of every identity key (<see cref="P:Bake.Core.ConfigKey.Identity"/>),
    /// stored in checkpoints and compared with config.yaml's, so a run directory holds one run; where the run is kept
    /// (OUT_DIR, however spelt) and how (workers, log period, TensorBoard, checkpoint period) may change.</summary>
    [<CompiledName("Hash")>]
    let hash (config: Config) : string =
        let identity =
            ConfigSchema.keys
            |> List.filter (fun spec -> spec.Identity)
            |> List.map (fun spec -> spec.Key + "=" + format config.Values[spec.Key])
            |> List.sort
            |> String.concat "\n"
        Convert.ToHexString(Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes identity)).ToLowerInvariant()
