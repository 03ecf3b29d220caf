namespace Bake.Core

open System

/// <summary>A configuration value, typed by the schema.</summary>
type ConfigValue =
    | Flag of bool
    | Integer of int
    | Number of float
    | Text of string
    | Integers of int list
    | Numbers of float list

/// <summary>One key of the configuration schema, untyped: its name (SECTION.KEY), default, meaning and, for a key
/// that takes one of a fixed set of names, those names (the only values parsing accepts).</summary>
type ConfigKey =
    { Key: string
      Default: ConfigValue
      Doc: string
      /// <summary>The accepted names of a choice key, in documentation order; empty for every other key.</summary>
      Choices: string list
      /// <summary>Whether the key belongs to a run's identity: true for every setting that changes what is trained or
      /// measured; false for where and how a run is kept (OUT_DIR, workers, log period, …), which may change between
      /// the start of a run and its resumption.</summary>
      Identity: bool }

/// <summary>A resolved configuration: every schema key with its value (defaults → file → overrides).</summary>
[<NoComparison>]
type Config = { Values: Map<string, ConfigValue>; Sources: string list }

/// <summary>A configuration key with its type, declared once (<see cref="T:Bake.Core.Keys"/>, and each method's
/// own keys): the schema entry and how its value reads. Reading a key through its declaration instead of by string
/// means a mistyped key does not compile.</summary>
[<NoComparison; NoEquality>]
type Key<'T> =
    { Spec: ConfigKey
      Read: ConfigValue -> 'T }

    /// <summary>SECTION.KEY, as in config files and <c>--set</c>.</summary>
    member this.Name = this.Spec.Key

    /// <summary>The default value.</summary>
    member this.Default: 'T = this.Read this.Spec.Default

    /// <summary>The value in a resolved config.</summary>
    member this.Of(config: Config) : 'T = this.Read config.Values[this.Spec.Key]

/// <summary>Declaring typed keys.</summary>
[<RequireQualifiedAccess>]
module Key =
    // Parsing checks every value against its key's kind, so a mismatch here is a programming error (a Config built
    // by hand with the wrong kind).
    let private wrongKind name (value: ConfigValue) kind : 'T = failwithf "%s is %A, not %s" name value kind

    let private declare name value doc read = { Spec = { Key = name; Default = value; Doc = doc; Choices = []; Identity = true }; Read = read }

    /// <summary>A True/False key.</summary>
    let flag name (value: bool) doc : Key<bool> =
        declare name (Flag value) doc (function Flag v -> v | other -> wrongKind name other "a flag")

    /// <summary>An integer key.</summary>
    let integer name (value: int) doc : Key<int> =
        declare name (Integer value) doc (function Integer v -> v | other -> wrongKind name other "an integer")

    /// <summary>A number key.</summary>
    let number name (value: float) doc : Key<float> =
        declare name (Number value) doc (function Number v -> v | other -> wrongKind name other "a number")

    /// <summary>A free text key ("" when unset).</summary>
    let text name (value: string) doc : Key<string> =
        declare name (Text value) doc (function Text v -> v | other -> wrongKind name other "text")

    /// <summary>A list-of-integers key.</summary>
    let integers name (value: int list) doc : Key<int list> =
        declare name (Integers value) doc (function Integers v -> v | other -> wrongKind name other "integers")

    /// <summary>A list-of-numbers key.</summary>
    let numbers name (value: float list) doc : Key<float list> =
        declare name (Numbers value) doc (function Numbers v -> v | other -> wrongKind name other "numbers")

    /// <summary>A key that takes one of a fixed set of names, each meaning a value (parsed case-insensitively when the
    /// config is read, so an unknown name is a configuration error listing the accepted ones). The documentation
    /// lists the names itself: the schema's doc is <paramref name="doc"/> followed by them.</summary>
    let choice name (value: string) (choices: (string * 'T) list) doc : Key<'T> =
        let names = choices |> List.map fst
        if not (List.contains value names) then failwithf "%s: default %s is not one of its choices %A" name value names
        let read =
            function
            | Text v ->
                match choices |> List.tryFind (fun (n, _) -> String.Equals(n, v, StringComparison.OrdinalIgnoreCase)) with
                | Some(_, meaning) -> meaning
                | None -> wrongKind name (Text v) $"one of {names}"
            | other -> wrongKind name other "text"
        { Spec = { Key = name; Default = Text value; Doc = doc; Choices = names; Identity = true }; Read = read }

    /// <summary>The same key, outside a run's identity (see <see cref="P:Bake.Core.ConfigKey.Identity"/>).</summary>
    let outsideIdentity (key: Key<'T>) : Key<'T> = { key with Spec = { key.Spec with Identity = false } }
