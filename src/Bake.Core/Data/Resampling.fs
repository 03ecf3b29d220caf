namespace Bake.Core.Data

open System
open Bake.Core

/// <summary>The resampling filters of Pillow's <c>Image.resize</c>, reproduced exactly (see
/// <see cref="T:Bake.Core.Data.Resampling"/>).</summary>
type ResampleFilter =
    /// <summary>Pillow's BOX: the area average (support 0.5 input pixel per output pixel).</summary>
    | Box
    /// <summary>Pillow's BILINEAR: a triangle filter (support 1); torchvision's <c>transforms.Resize</c> default.</summary>
    | Bilinear
    /// <summary>Pillow's BICUBIC: Keys' cubic with a = −0.5 (support 2).</summary>
    | Bicubic
    /// <summary>Pillow's LANCZOS (formerly ANTIALIAS): Lanczos-3 (support 3).</summary>
    | Lanczos

    /// <summary>The lower-case name used on the command line.</summary>
    member this.Name =
        match this with
        | Box -> "box"
        | Bilinear -> "bilinear"
        | Bicubic -> "bicubic"
        | Lanczos -> "lanczos"

    /// <summary>Every filter, in order of increasing support.</summary>
    static member All = [ Box; Bilinear; Bicubic; Lanczos ]

    /// <summary>Parses a filter name (case-insensitive).</summary>
    /// <exception cref="T:Bake.Core.UsageException">An unknown name; the message lists the known ones.</exception>
    static member Parse(name: string) : ResampleFilter =
        let key = if isNull name then "" else name.Trim().ToLowerInvariant()
        match ResampleFilter.All |> List.tryFind (fun f -> f.Name = key) with
        | Some filter -> filter
        | None ->
            let known = ResampleFilter.All |> List.map (fun f -> f.Name) |> String.concat ", "
            raise (UsageException $"unknown resampling filter '{name}': expected one of {known}")

/// <summary>Image resizing that gives Pillow's <c>Image.resize(size, filter)</c> byte for byte (Pillow's
/// <c>libImaging/Resample.c</c> algorithm, written from its description): separable, horizontal pass then vertical
/// pass, each output pixel a normalised sum over the input pixels within the filter's support scaled by the reduction
/// factor (so downscaling is antialiased), with 22-bit fixed-point weights and rounding to uint8 after each pass.</summary>
/// <remarks>Images are channel-planar bytes, C×H×W, as <c>ImageFolder.decode</c> returns them; every channel is
/// filtered alike. Inputs are never modified; the result is a fresh array.</remarks>
[<RequireQualifiedAccess>]
module Resampling =

    let private support filter =
        match filter with
        | Box -> 0.5
        | Bilinear -> 1.0
        | Bicubic -> 2.0
        | Lanczos -> 3.0

    let private sinc (x: float) =
        if x = 0.0 then 1.0
        else
            let px = x * Math.PI
            sin px / px

    let private weight filter (x: float) =
        match filter with
        | Box -> if x > -0.5 && x <= 0.5 then 1.0 else 0.0
        | Bilinear ->
            let x = abs x
            if x < 1.0 then 1.0 - x else 0.0
        | Bicubic ->
            let a = -0.5
            let x = abs x
            if x < 1.0 then ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            elif x < 2.0 then (((x - 5.0) * x + 8.0) * x - 4.0) * a
            else 0.0
        | Lanczos -> if -3.0 <= x && x < 3.0 then sinc x * sinc (x / 3.0) else 0.0

    let private precisionBits = 22

    /// <summary>For each output position along one axis: the first input index and the fixed-point weights.</summary>
    let private coefficients filter (inSize: int) (outSize: int) : (int * int[])[] =
        let scale = float inSize / float outSize
        let filterScale = max scale 1.0
        let reach = support filter * filterScale
        Array.init outSize (fun xx ->
            let center = (float xx + 0.5) * scale
            // C casts truncate toward zero, as F#'s int does.
            let xmin = max (int (center - reach + 0.5)) 0
            let xmax = min (int (center + reach + 0.5)) inSize
            let raw = Array.init (xmax - xmin) (fun x -> weight filter ((float (x + xmin) - center + 0.5) / filterScale))
            let total = Array.sum raw
            let normalised = if total <> 0.0 then raw |> Array.map (fun w -> w / total) else raw
            let fixedPoint =
                normalised
                |> Array.map (fun w ->
                    let scaled = w * float (1 <<< precisionBits)
                    if w < 0.0 then int (-0.5 + scaled) else int (0.5 + scaled))
            xmin, fixedPoint)

    let private clip8 (sum: int) =
        let shifted = sum >>> precisionBits
        if shifted < 0 then 0uy elif shifted > 255 then 255uy else byte shifted

    /// <summary>One pass along one axis of a C×H×W planar image: along each row (changing the width) when
    /// <paramref name="horizontal"/>, else along each column (changing the height).</summary>
    let private pass (taps: (int * int[])[]) (source: byte[]) (channels: int) (h: int) (w: int) (horizontal: bool) : byte[] =
        let outH, outW = if horizontal then h, taps.Length else taps.Length, w
        let result = Array.zeroCreate (channels * outH * outW)
        for c in 0 .. channels - 1 do
            let inPlane = c * h * w
            let outPlane = c * outH * outW
            for y in 0 .. outH - 1 do
                for x in 0 .. outW - 1 do
                    let first, k = taps[if horizontal then x else y]
                    let mutable sum = 1 <<< (precisionBits - 1)
                    for t in 0 .. k.Length - 1 do
                        let pixel =
                            if horizontal then source[inPlane + y * w + first + t]
                            else source[inPlane + (first + t) * w + x]
                        sum <- sum + int pixel * k[t]
                    result[outPlane + y * outW + x] <- clip8 sum
        result

    /// <summary>Resizes a C×H×W planar uint8 image to C×<paramref name="outH"/>×<paramref name="outW"/> as Pillow's
    /// <c>Image.resize((outW, outH), filter)</c> does (an axis whose size does not change is not filtered, as in
    /// Pillow).</summary>
    /// <param name="filter">The resampling filter.</param>
    /// <param name="planar">C·H·W bytes, channel-planar; not modified.</param>
    /// <param name="channels">C ≥ 1.</param>
    /// <param name="h">H ≥ 1.</param>
    /// <param name="w">W ≥ 1.</param>
    /// <param name="outH">The output height ≥ 1.</param>
    /// <param name="outW">The output width ≥ 1.</param>
    /// <returns>A fresh array of C·outH·outW bytes.</returns>
    /// <exception cref="T:System.ArgumentException">A size below 1, or an array whose length is not C·H·W.</exception>
    [<CompiledName("Resize")>]
    let resize (filter: ResampleFilter) (planar: byte[]) (channels: int) (h: int) (w: int) (outH: int) (outW: int) : byte[] =
        if isNull planar then nullArg "planar"
        if channels < 1 || h < 1 || w < 1 || outH < 1 || outW < 1 then
            invalidArg "size" $"sizes must be at least 1, got {channels}×{h}×{w} to {outH}×{outW}"
        if planar.Length <> channels * h * w then
            invalidArg "planar" $"expected {channels}×{h}×{w} = {channels * h * w} bytes, got {planar.Length}"
        let horizontal = if outW = w then Array.copy planar else pass (coefficients filter w outW) planar channels h w true
        if outH = h then horizontal else pass (coefficients filter h outH) horizontal channels h outW false
