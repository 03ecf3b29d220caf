// Load Bake into an F# script (dotnet fsi). Usage, at the top of a script in scripts/:
//
//     #load "Bake.fsx"
//
// It references the assemblies of the Release build of the `bake` program (build it first:
// `dotnet build src/Bake.Cli -c Release`) and preloads libtorch and the build's libLibTorchSharp.so.
// Why: `dotnet fsi` would otherwise resolve TorchSharp's native library from the NuGet cache, whose copy is
// not patched for Debian 12's libstdc++ (see build/LibTorchSharpGlibcxx.targets); TorchSharp uses libraries
// that are already loaded, so loading the build's copies by full path first makes every torch call work.
#r "../src/Bake.Cli/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../src/Bake.Cli/bin/Release/net10.0/linux-x64/Bake.Core.dll"
#r "../src/Bake.Cli/bin/Release/net10.0/linux-x64/YamlDotNet.dll"
#r "../src/Bake.Cli/bin/Release/net10.0/linux-x64/ScottPlot.dll"
#r "../src/Bake.Cli/bin/Release/net10.0/linux-x64/SkiaSharp.dll"
#r "../src/Bake.Cli/bin/Release/net10.0/linux-x64/TorchSharp.PyBridge.dll"

open System
open System.IO
open System.Runtime.InteropServices

let private buildOutput = Path.Combine(__SOURCE_DIRECTORY__, "..", "src", "Bake.Cli", "bin", "Release", "net10.0", "linux-x64") |> Path.GetFullPath

do
    if not (File.Exists(Path.Combine(buildOutput, "bake.dll"))) then
        failwithf "Bake is not built: run `dotnet build src/Bake.Cli -c Release` first (looked in %s)" buildOutput
    if RuntimeInformation.IsOSPlatform OSPlatform.Linux then
        for library in [ "libtorch.so"; "libLibTorchSharp.so" ] do
            NativeLibrary.Load(Path.Combine(buildOutput, library)) |> ignore
