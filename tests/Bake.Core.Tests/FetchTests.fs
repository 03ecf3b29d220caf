module Bake.Core.Tests.FetchTests

open System
open System.IO
open System.Net
open System.Net.Http
open System.Net.Sockets
open System.Security.Cryptography
open System.Threading
open Expecto
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil

/// A file server on 127.0.0.1 that honours `Range: bytes=N-`, records the requests' ranges, and can cut the first
/// response for a file after a number of bytes (a dropped connection).
type LocalServer(files: Collections.Generic.IDictionary<string, byte[]>, cutFirstAfter: int option) =
    let port =
        let probe = new TcpListener(IPAddress.Loopback, 0)
        probe.Start()
        let p = (probe.LocalEndpoint :?> IPEndPoint).Port
        probe.Stop()
        p
    let listener = new HttpListener()
    do listener.Prefixes.Add $"http://127.0.0.1:{port}/"
    do listener.Start()
    let requests = Collections.Concurrent.ConcurrentQueue<string * string>()
    let mutable cut = cutFirstAfter
    let serve (context: HttpListenerContext) =
        let name = context.Request.Url.AbsolutePath.TrimStart '/'
        let range = context.Request.Headers["Range"]
        requests.Enqueue((name, (if isNull range then "" else range)))
        let response = context.Response
        match files.TryGetValue name with
        | false, _ ->
            response.StatusCode <- 404
            response.Close()
        | true, content ->
            let start =
                if isNull range then 0
                else int (range.Replace("bytes=", "").TrimEnd('-'))
            if start >= content.Length then
                response.StatusCode <- 416
                response.Close()
            else
                if start > 0 then
                    response.StatusCode <- 206
                    response.Headers.Add("Content-Range", $"bytes {start}-{content.Length - 1}/{content.Length}")
                response.ContentLength64 <- int64 (content.Length - start)
                match cut with
                | Some n when start = 0 ->
                    cut <- None
                    response.OutputStream.Write(content, 0, n)
                    response.OutputStream.Flush()
                    response.Abort()
                | _ ->
                    response.OutputStream.Write(content, start, content.Length - start)
                    response.Close()
    let loop =
        Thread(
            (fun () ->
                try
                    while listener.IsListening do
                        let context = listener.GetContext()
                        try serve context with _ -> ()
                with _ -> ()),
            IsBackground = true
        )
    do loop.Start()
    member _.BaseUrl = $"http://127.0.0.1:{port}/"
    member _.Requests = List.ofSeq requests
    interface IDisposable with
        member _.Dispose() =
            listener.Stop()
            listener.Close()

let md5 (bytes: byte[]) = Convert.ToHexString(MD5.HashData bytes).ToLowerInvariant()
let sha256 (bytes: byte[]) = Convert.ToHexString(SHA256.HashData bytes).ToLowerInvariant()

/// A .tar.gz archive holding the given files.
let tarGz (entries: (string * byte[]) list) =
    use output = new MemoryStream()
    do
        use gzip = new Compression.GZipStream(output, Compression.CompressionLevel.Fastest)
        use tar = new Formats.Tar.TarWriter(gzip)
        for name, content in entries do
            let entry = Formats.Tar.PaxTarEntry(Formats.Tar.TarEntryType.RegularFile, name)
            entry.DataStream <- new MemoryStream(content)
            tar.WriteEntry entry
    output.ToArray()

let client () = new HttpClient(Timeout = TimeSpan.FromSeconds 20.0)

[<Tests>]
let tests =
    testSequenced <| testList "Data.Fetch (local HTTP server on 127.0.0.1)" [
        test "downloads, verifies MD5, SHA-256 and content SHA-256, and the IDX result loads" {
            use idx = new TempDir()
            writeIdxDataset idx.Path true 6 4 3
            let files = Directory.GetFiles idx.Path |> Array.map (fun p -> Path.GetFileName p, File.ReadAllBytes p) |> dict
            use server = new LocalServer(files, None)
            use cache = new TempDir()
            let remote =
                { Name = "tiny"
                  BaseUrl = "http://unused.invalid/"
                  Files =
                    [ for KeyValue(name, content) in files ->
                          { Name = name; Md5 = Some(md5 content); Sha256 = Some(sha256 content)
                            ContentSha256 = Some(sha256 (DataFile.readAll (Path.Combine(idx.Path, name)))); Extract = false } ]
                  Provenance = "test" }
            use http = client ()
            let lines = ResizeArray()
            let folder = Fetch.fetchDataset (remote, cache.Path, Some server.BaseUrl, http, lines.Add)
            Expect.equal folder (Path.Combine(cache.Path, "tiny")) "cache/<name>"
            Expect.equal (Datasets.loadFolder folder None ImageFolder.defaultOptions).Train.Count 6 "the fetched dataset loads"
            // A second fetch finds everything present and verified, and downloads nothing.
            let before = server.Requests.Length
            Fetch.fetchDataset (remote, cache.Path, Some server.BaseUrl, http, lines.Add) |> ignore
            Expect.equal server.Requests.Length before "no new request"
            Expect.isTrue (lines |> Seq.exists (fun l -> l.Contains "present and verified")) "reported"
        }

        test "an interrupted download keeps its .part file and the next run resumes it with a Range request" {
            let content = pixels 3 300000
            use server = new LocalServer(dict [ "big.bin", content ], Some 100000)
            use cache = new TempDir()
            let remote =
                { Name = "big"; BaseUrl = ""; Provenance = "test"
                  Files = [ { Name = "big.bin"; Md5 = Some(md5 content); Sha256 = Some(sha256 content); ContentSha256 = None; Extract = false } ] }
            use http = client ()
            let e = throwsWith<BakeException> (fun () -> Fetch.fetchDataset (remote, cache.Path, Some server.BaseUrl, http, ignore) |> ignore)
            Expect.stringContains e.Message "run the same command again to resume" "tells how to resume"
            let partial = Path.Combine(cache.Path, "big", "big.bin.part")
            Expect.isTrue (File.Exists partial && FileInfo(partial).Length > 0L) "partial file kept"
            let kept = FileInfo(partial).Length
            Fetch.fetchDataset (remote, cache.Path, Some server.BaseUrl, http, ignore) |> ignore
            Expect.sequenceEqual (File.ReadAllBytes(Path.Combine(cache.Path, "big", "big.bin"))) content "complete and identical"
            Expect.isFalse (File.Exists partial) "no partial file left"
            Expect.contains (server.Requests |> List.map snd) $"bytes={kept}-" "resumed with a Range request"
        }

        test "a checksum mismatch deletes the download and names the URL and both hashes" {
            let content = pixels 4 5000
            use server = new LocalServer(dict [ "x.bin", content ], None)
            use cache = new TempDir()
            let remote =
                { Name = "x"; BaseUrl = ""; Provenance = "test"
                  Files = [ { Name = "x.bin"; Md5 = Some "00000000000000000000000000000000"; Sha256 = None; ContentSha256 = None; Extract = false } ] }
            use http = client ()
            let e = throwsWith<BakeException> (fun () -> Fetch.fetchDataset (remote, cache.Path, Some server.BaseUrl, http, ignore) |> ignore)
            Expect.stringContains e.Message (server.BaseUrl + "x.bin") "the URL"
            Expect.stringContains e.Message $"MD5 expected 00000000000000000000000000000000, got {md5 content}" "both hashes"
            Expect.isEmpty (Directory.GetFiles(Path.Combine(cache.Path, "x"))) "nothing left behind"
        }

        test "an HTTP error names the URL and the status" {
            use server = new LocalServer(dict [], None)
            use cache = new TempDir()
            use http = client ()
            let e = throwsWith<BakeException> (fun () -> Fetch.fetchDataset (Fetch.find "cifar10", cache.Path, Some server.BaseUrl, http, ignore) |> ignore)
            Expect.stringContains e.Message "cifar-10-binary.tar.gz: HTTP 404" "URL and status"
        }

        test "archives are extracted after verification and the dataset is recognised in the cache" {
            use binary = new TempDir()
            CifarTests.writeCifar10Binary (binary.File "cifar-10-batches-bin")
            let archive =
                tarGz [ for path in Directory.GetFiles(binary.File "cifar-10-batches-bin") -> $"cifar-10-batches-bin/{Path.GetFileName path}", File.ReadAllBytes path ]
            use server = new LocalServer(dict [ "cifar-10-binary.tar.gz", archive ], None)
            use cache = new TempDir()
            let remote =
                { Name = "cifar10"; BaseUrl = ""; Provenance = "test"
                  Files = [ { Name = "cifar-10-binary.tar.gz"; Md5 = Some(md5 archive); Sha256 = Some(sha256 archive); ContentSha256 = None; Extract = true } ] }
            use http = client ()
            Fetch.fetchDataset (remote, cache.Path, Some server.BaseUrl, http, ignore) |> ignore
            CifarTests.expectCifar10 (Datasets.loadWith ("cifar10", None, Some cache.Path, ImageFolder.defaultOptions))
        }

        test "the catalogue: four datasets, every file with a published MD5; the IDX files also with a content SHA-256" {
            Expect.equal (Fetch.catalogue |> List.map (fun d -> d.Name)) [ "fashion-mnist"; "mnist"; "cifar10"; "cifar100" ] "names"
            for d in Fetch.catalogue do
                for f in d.Files do
                    Expect.equal (f.Md5 |> Option.map String.length) (Some 32) $"{f.Name} MD5"
                    if f.Name.EndsWith "ubyte.gz" then
                        Expect.equal (f.ContentSha256 |> Option.map String.length) (Some 64) $"{f.Name} content SHA-256"
            let e = throwsWith<UsageException> (fun () -> Fetch.find "imagenet" |> ignore)
            Expect.stringContains e.Message "fashion-mnist, mnist, cifar10, cifar100" "lists the names"
        }
    ]
