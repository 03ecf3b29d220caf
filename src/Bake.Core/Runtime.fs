namespace Bake.Core

open System
open System.Runtime.InteropServices

/// <summary>Process-wide settings of the native runtime, applied by programs before their first torch call.</summary>
[<RequireQualifiedAccess>]
module Runtime =

    [<DllImport("libc", EntryPoint = "setenv")>]
    extern int private setenv(string name, string value, int overwrite)

    /// <summary>Sets OMP_WAIT_POLICY=PASSIVE in the native environment unless the user set it. OpenMP reads it
    /// when libtorch starts, so call this before any torch call. Why: with the default (active) waiting, small
    /// libtorch ops stall in 4 ms steps while another process or thread uses the CPU (docs/architecture.md, "Environment"); on a
    /// dedicated machine set OMP_WAIT_POLICY=ACTIVE yourself if you prefer spinning.</summary>
    [<CompiledName("UsePassiveOpenMpWait")>]
    let usePassiveOpenMpWait () : unit =
        if RuntimeInformation.IsOSPlatform OSPlatform.Linux && String.IsNullOrEmpty(Environment.GetEnvironmentVariable "OMP_WAIT_POLICY") then
            setenv ("OMP_WAIT_POLICY", "PASSIVE", 0) |> ignore
