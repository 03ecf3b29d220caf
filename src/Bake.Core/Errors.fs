namespace Bake.Core

open System
open System.IO

/// <summary>A mistake in how Bake was called (unknown option, invalid value, invalid configuration).
/// The command line reports its message in one line, without a stack trace, and exits with code 2.</summary>
type UsageException(message: string) =
    inherit Exception(message)

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
        with
        | :? UnauthorizedAccessException
        | :? IOException as e ->
            (try File.Delete temp with _ -> ())
            raise (BakeException($"cannot write {full}: {e.Message}", e))

    /// <summary>Writes text (UTF-8, no BOM) atomically; see <see cref="M:Bake.Core.Files.WriteAtomic"/>.</summary>
    [<CompiledName("WriteAllTextAtomic")>]
    let writeAllTextAtomic (path: string) (text: string) : unit =
        writeAtomic path (fun stream ->
            let bytes = Text.UTF8Encoding(false).GetBytes text
            stream.Write(bytes, 0, bytes.Length))
