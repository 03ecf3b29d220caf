namespace Bake.Core

open System
open System.IO

/// <summary>A mistake in how Bake was called (unknown option, invalid value, invalid configuration). The message
/// names the configuration key or the parameter, never a command-line flag: <see cref="P:Bake.Core.UsageException.Parameter"/>
/// names the parameter of the call at fault (when one is), so that the command line can add its flag and the C#
/// façade its argument name. The command line reports it in one line, without a stack trace, and exits with code 2.</summary>
type UsageException(message: string, parameter: string) =
    inherit Exception(message)
    new(message: string) = UsageException(message, null)

    /// <summary>The parameter at fault (e.g. "resume", "dataset", "out"), or null when the message names a config key.</summary>
    member _.Parameter: string = parameter

/// <summary>A failure the user can act on: a missing, truncated or corrupt file, an unwritable directory, a
/// diverging run. The message names the file, key or value and what was expected. The command line reports it
/// without a stack trace and exits with code 1.</summary>
type BakeException(message: string, inner: exn) =
    inherit Exception(message, inner)
    new(message: string) = BakeException(message, null)

/// <summary>File helpers shared by every writer in Bake.</summary>
[<RequireQualifiedAccess>]
module Files =

    /// <summary>Writes a file atomically: the content goes to a temporary file in the same directory, which is
    /// then renamed over <paramref name="path"/>, so readers never see a half-written file and a killed process
    /// leaves the previous version intact. Creates the directory if needed.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The directory cannot be created or written.</exception>
    [<CompiledName("WriteAtomic")>]
    let writeAtomic (path: string) (write: Stream -> unit) : unit =
        let full = Path.GetFullPath path
        let directory = Path.GetDirectoryName full
        let temp = Path.Combine(directory, $".{Path.GetFileName full}.{Guid.NewGuid():N}.tmp")
        try
            Directory.CreateDirectory directory |> ignore
            do
                use stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write)
                write stream
                stream.Flush true
            File.Move(temp, full, true)
        with e ->
            // Whatever failed (the disk, or the writer itself), no temporary file is left behind.
            (try File.Delete temp with _ -> ())
            match e with
            | :? UnauthorizedAccessException | :? IOException -> raise (BakeException($"cannot write {full}: {e.Message}", e))
            | _ -> reraise ()

    /// <summary>Writes text (UTF-8, no BOM) atomically; see <see cref="M:Bake.Core.Files.WriteAtomic"/>.</summary>
    [<CompiledName("WriteAllTextAtomic")>]
    let writeAllTextAtomic (path: string) (text: string) : unit =
        writeAtomic path (fun stream ->
            let bytes = Text.UTF8Encoding(false).GetBytes text
            stream.Write(bytes, 0, bytes.Length))

/// <summary>"Did you mean" suggestions for misspelt names (config keys, model names).</summary>
[<RequireQualifiedAccess>]
module Spelling =

    /// <summary>The Levenshtein distance: the fewest single-character insertions, deletions and substitutions that
    /// turn <paramref name="a"/> into <paramref name="b"/> (case-sensitive).</summary>
    [<CompiledName("Distance")>]
    let distance (a: string, b: string) : int =
        // Two rows of the dynamic-programming table suffice: row i only reads row i − 1.
        let previous = Array.init (b.Length + 1) id
        let current = Array.zeroCreate (b.Length + 1)
        for i in 1 .. a.Length do
            current[0] <- i
            for j in 1 .. b.Length do
                let cost = if a[i - 1] = b[j - 1] then 0 else 1
                current[j] <- min (min (current[j - 1] + 1) (previous[j] + 1)) (previous[j - 1] + cost)
            Array.blit current 0 previous 0 current.Length
        previous[b.Length]

    /// <summary>The candidate closest to <paramref name="word"/> by <see cref="M:Bake.Core.Spelling.Distance(System.String,System.String)"/>;
    /// the first of equally close ones.</summary>
    /// <exception cref="T:System.ArgumentException">No candidates.</exception>
    [<CompiledName("Nearest")>]
    let nearest (candidates: string seq, word: string) : string =
        candidates |> Seq.minBy (fun candidate -> distance (word, candidate))
