/// Guards build/LibTorchSharpGlibcxx.targets, the build step that makes TorchSharp load on Debian 12.
/// Delete this file together with that targets file once TorchSharp no longer needs GLIBCXX_3.4.32.
module Bake.Core.Tests.NativeLibraryPatchTests

open System
open System.Diagnostics
open System.IO
open System.Text
open Expecto
open Bake.Core.Tests.TestUtil

let version = "GLIBCXX_3.4.32"

/// An independent reader: the vna_flags of every version a library needs, by version name.
let neededVersionFlags (elf: byte[]) : Map<string, uint16> =
    let u16 (o: int) = BitConverter.ToUInt16(elf, o)
    let u32 (o: int) = int (BitConverter.ToUInt32(elf, o))
    let u64 (o: int) = int (BitConverter.ToUInt64(elf, o))
    let shoff, shentsize, shnum = u64 0x28, int (u16 0x3A), int (u16 0x3C)
    let section i = shoff + i * shentsize
    [ for s in 0 .. shnum - 1 do
          let sh = section s
          if BitConverter.ToUInt32(elf, sh + 4) = 0x6ffffffeu then
              let strtab = u64 (section (u32 (sh + 0x28)) + 0x18)
              let mutable need = u64 (sh + 0x18)
              for _ in 1 .. u32 (sh + 0x2C) do
                  let mutable aux = need + u32 (need + 8)
                  for _ in 1 .. int (u16 (need + 2)) do
                      let name = strtab + u32 (aux + 8)
                      let length = Array.IndexOf(elf, 0uy, name) - name
                      yield Encoding.ASCII.GetString(elf, name, length), u16 (aux + 4)
                      aux <- aux + u32 (aux + 12)
                  need <- need + u32 (need + 12) ]
    |> Map.ofList

/// A minimal ELF64 with a .dynstr and a .gnu.version_r section needing GLIBCXX_3.4.30 and GLIBCXX_3.4.32.
let fixture () : byte[] =
    let strings = Encoding.ASCII.GetBytes("\000libstdc++.so.6\000GLIBCXX_3.4.30\000GLIBCXX_3.4.32\000")
    let fileName, name30, name32 = 1, 16, 31
    let elf = Array.zeroCreate<byte> 512
    let put16 (o: int) (v: int) = BitConverter.GetBytes(uint16 v).CopyTo(elf, o)
    let put32 (o: int) (v: int) = BitConverter.GetBytes(uint32 v).CopyTo(elf, o)
    let put64 (o: int) (v: int) = BitConverter.GetBytes(uint64 v).CopyTo(elf, o)
    [| 0x7fuy; byte 'E'; byte 'L'; byte 'F'; 2uy; 1uy; 1uy |].CopyTo(elf, 0)
    let strOffset, needOffset, shoff = 64, 128, 256
    strings.CopyTo(elf, strOffset)
    // Elf64_Verneed: version 1, 2 aux entries, file name, aux at +16, no next.
    put16 needOffset 1; put16 (needOffset + 2) 2; put32 (needOffset + 4) fileName; put32 (needOffset + 8) 16; put32 (needOffset + 12) 0
    // Elf64_Vernaux entries: hash, flags, other, name, next.
    let aux1, aux2 = needOffset + 16, needOffset + 32
    put32 aux1 0x0297f870; put16 (aux1 + 4) 0; put16 (aux1 + 6) 2; put32 (aux1 + 8) name30; put32 (aux1 + 12) 16
    put32 aux2 0x0297f872; put16 (aux2 + 4) 0; put16 (aux2 + 6) 3; put32 (aux2 + 8) name32; put32 (aux2 + 12) 0
    put64 0x28 shoff; put16 0x3A 64; put16 0x3C 3
    // Section 1: .dynstr (SHT_STRTAB); section 2: .gnu.version_r, sh_link = 1, sh_info = 1 entry.
    let s1, s2 = shoff + 64, shoff + 128
    put32 (s1 + 4) 3; put64 (s1 + 0x18) strOffset; put64 (s1 + 0x20) strings.Length
    put32 (s2 + 4) 0x6ffffffe; put64 (s2 + 0x18) needOffset; put64 (s2 + 0x20) 48; put32 (s2 + 0x28) 1; put32 (s2 + 0x2C) 1
    elf

/// Runs the build's patch task on one file, exactly as the build does, and returns what it reported.
let runPatchTask (file: string) (hostLibStdCxx: string) : string =
    let targets = Path.Combine(repoRoot, "build", "LibTorchSharpGlibcxx.targets")
    let info =
        ProcessStartInfo("dotnet", $"msbuild \"{targets}\" -nologo -v:m -t:BakePatchElfFile -p:BakeElfFile=\"{file}\" -p:BakeHostLibStdCxx=\"{hostLibStdCxx}\"",
                         RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    use proc = Process.Start info
    let output = proc.StandardOutput.ReadToEnd() + proc.StandardError.ReadToEnd()
    proc.WaitForExit()
    Expect.equal proc.ExitCode 0 $"msbuild failed:\n{output}"
    let line = output.Split('\n') |> Array.tryFind (fun l -> l.Contains "bake-elf-patch:")
    Expect.isSome line $"the task reports its outcome:\n{output}"
    line.Value.Trim().Substring("bake-elf-patch: ".Length)

let withTemp (body: string -> unit) =
    let dir = Directory.CreateTempSubdirectory("bake-elf-").FullName
    try body dir finally Directory.Delete(dir, true)

let hostHasVersion () =
    [ "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"; "/lib/x86_64-linux-gnu/libstdc++.so.6"; "/usr/lib64/libstdc++.so.6" ]
    |> List.tryFind File.Exists
    |> Option.map (fun path -> File.ReadAllText(path, Encoding.Latin1).Contains(version + "\000"))

[<Tests>]
let tests =
    testList "Native library patch (build/LibTorchSharpGlibcxx.targets)" [
        test "the ELF fixture is read back by the independent reader" {
            let flags = neededVersionFlags (fixture ())
            Expect.equal flags (Map [ "GLIBCXX_3.4.30", 0us; version, 0us ]) "two needed versions, neither weak"
        }

        test "on a host without the version: sets VER_FLG_WEAK on exactly that entry, byte for byte, then is idempotent" {
            withTemp (fun dir ->
                let file, host = Path.Combine(dir, "libfixture.so"), Path.Combine(dir, "libstdc++.so.6")
                let original = fixture ()
                File.WriteAllBytes(file, original)
                File.WriteAllText(host, "GLIBCXX_3.4.29\000GLIBCXX_3.4.30\000")
                Expect.equal (runPatchTask file host) "patched" "first run patches"
                let patched = File.ReadAllBytes file
                let changed = [ for i in 0 .. original.Length - 1 do if original[i] <> patched[i] then i ]
                Expect.equal changed [ 128 + 32 + 4 ] "only the vna_flags byte of GLIBCXX_3.4.32 changed"
                Expect.equal (neededVersionFlags patched) (Map [ "GLIBCXX_3.4.30", 0us; version, 2us ]) "weak flag set"
                Expect.equal (runPatchTask file host) "already-weak" "second run changes nothing"
                Expect.equal (File.ReadAllBytes file) patched "file unchanged by the second run")
        }

        test "on a host that has the version: leaves the file untouched" {
            withTemp (fun dir ->
                let file, host = Path.Combine(dir, "libfixture.so"), Path.Combine(dir, "libstdc++.so.6")
                File.WriteAllBytes(file, fixture ())
                File.WriteAllText(host, "GLIBCXX_3.4.31\000GLIBCXX_3.4.32\000")
                Expect.equal (runPatchTask file host) "host-has-version" "no patch needed"
                Expect.equal (File.ReadAllBytes file) (fixture ()) "file unchanged")
        }

        test "the copy in this build's output is weak exactly when the host lacks the version; the NuGet cache is untouched" {
            let output = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so")
            match hostHasVersion () with
            | None -> skiptest "no libstdc++.so.6 at the usual Linux paths"
            | Some hostHas when File.Exists output ->
                let flags = neededVersionFlags (File.ReadAllBytes output)
                let expected = if hostHas then 0us else 2us
                Expect.equal (flags[version] &&& 2us) expected "output copy's GLIBCXX_3.4.32 weak bit"
                let cache =
                    Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile,
                                 ".nuget", "packages", "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so")
                let cache = Option.ofObj (Environment.GetEnvironmentVariable "NUGET_PACKAGES") |> Option.map (fun root -> Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so")) |> Option.defaultValue cache
                if File.Exists cache then
                    Expect.equal ((neededVersionFlags (File.ReadAllBytes cache))[version] &&& 2us) 0us "the package cache's copy is pristine"
            | Some _ -> skiptest "libLibTorchSharp.so is not in this build's output (not a linux-x64 build)"
        }
    ]
