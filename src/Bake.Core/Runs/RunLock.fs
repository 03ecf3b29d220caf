namespace Bake.Core

open System
open System.Diagnostics
open System.IO
open System.Text.Json.Nodes

/// <summary>The exclusive hold of one process on a run directory, so that a run directory belongs to one run: a second
/// training (another process, or another trainer in this one) is refused with a message naming the holder.</summary>
/// <remarks>The lock is <c>OUT_DIR/.bake.lock</c> opened with no sharing, which .NET implements with an advisory
/// <c>flock</c> on Unix and a share mode on Windows: the operating system releases it when the holder exits, however it
/// exits (a <c>kill -9</c> included), so a lock left by a dead process is simply taken over. Who holds it is written
/// next to it (<c>.bake.lock.json</c>: process id, host, start time) for the refusal's message.</remarks>
[<Sealed>]
type RunLock private (stream: FileStream, ownerFile: string) =

    /// <summary>The lock file's name in a run directory.</summary>
    static member FileName = ".bake.lock"

    /// <summary>Takes the lock on a run directory (creating the directory).</summary>
    /// <exception cref="T:Bake.Core.UsageException">Another training holds it; the message names the process.</exception>
    /// <exception cref="T:Bake.Core.BakeException">The directory cannot be written.</exception>
    static member Acquire(runDir: string) : RunLock =
        let path = Path.Combine(runDir, RunLock.FileName)
        let ownerFile = path + ".json"
        let stream =
            try
                Directory.CreateDirectory runDir |> ignore
                new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)
            with
            | :? IOException when File.Exists path ->
                let holder =
                    try
                        let node = JsonNode.Parse(File.ReadAllText ownerFile)
                        $"""process {node["pid"]} on {node["host"]}, since {node["started"]}"""
                    with _ -> "another process"
                raise (UsageException $"{runDir} (OUT_DIR) is in use by another training ({holder}): a run directory belongs to one run; wait for it or choose another OUT_DIR")
            | :? IOException | :? UnauthorizedAccessException as e ->
                raise (BakeException($"cannot write the run directory {runDir} (OUT_DIR): {e.Message}", e))
        let owner = JsonObject()
        owner["pid"] <- JsonValue.Create Environment.ProcessId
        owner["host"] <- JsonValue.Create Environment.MachineName
        owner["started"] <- JsonValue.Create(DateTime.UtcNow.ToString("u"))
        (try Files.writeAllTextAtomic ownerFile (owner.ToJsonString()) with _ -> ())
        new RunLock(stream, ownerFile)

    interface IDisposable with
        member _.Dispose() =
            (try File.Delete ownerFile with _ -> ())
            stream.Dispose()
