namespace Bake.Core.Reporting

open System

/// <summary>Summary statistics for comparing methods over seeds: mean ± sample standard deviation and Welch's
/// unequal-variance t-test.</summary>
[<RequireQualifiedAccess>]
module Statistics =

    /// <summary>The mean of the values (NaN for none).</summary>
    [<CompiledName("Mean")>]
    let mean (values: float[]) : float = if values.Length = 0 then nan else Array.average values

    /// <summary>The sample standard deviation (n − 1 in the denominator; 0 for one value, NaN for none).</summary>
    [<CompiledName("StandardDeviation")>]
    let standardDeviation (values: float[]) : float =
        match values.Length with
        | 0 -> nan
        | 1 -> 0.0
        | n ->
            let m = mean values
            sqrt ((values |> Array.sumBy (fun v -> (v - m) * (v - m))) / float (n - 1))

    /// <summary>ln Γ(x) (Lanczos, g = 7), accurate to ~1e-13 for x &gt; 0.</summary>
    let private logGamma (x: float) =
        let coefficients =
            [| 0.99999999999980993; 676.5203681218851; -1259.1392167224028; 771.32342877765313; -176.61502916214059
               12.507343278686905; -0.13857109526572012; 9.9843695780195716e-6; 1.5056327351493116e-7 |]
        let x = x - 1.0
        let mutable a = coefficients[0]
        let t = x + 7.5
        for i in 1..8 do a <- a + coefficients[i] / (x + float i)
        0.5 * Math.Log(2.0 * Math.PI) + (x + 0.5) * Math.Log t - t + Math.Log a

    /// <summary>The continued fraction of the regularised incomplete beta function (Numerical Recipes' betacf idea).</summary>
    let private betaFraction (a: float) (b: float) (x: float) =
        let tiny = 1e-300
        let mutable c = 1.0
        let mutable d = 1.0 - (a + b) * x / (a + 1.0)
        if abs d < tiny then d <- tiny
        d <- 1.0 / d
        let mutable h = d
        let mutable m = 1
        let mutable converged = false
        while not converged && m <= 300 do
            let m2 = float (2 * m)
            let fm = float m
            let aa = fm * (b - fm) * x / ((a + m2 - 1.0) * (a + m2))
            d <- 1.0 + aa * d
            if abs d < tiny then d <- tiny
            c <- 1.0 + aa / c
            if abs c < tiny then c <- tiny
            d <- 1.0 / d
            h <- h * d * c
            let aa = -(a + fm) * (a + b + fm) * x / ((a + m2) * (a + m2 + 1.0))
            d <- 1.0 + aa * d
            if abs d < tiny then d <- tiny
            c <- 1.0 + aa / c
            if abs c < tiny then c <- tiny
            d <- 1.0 / d
            let delta = d * c
            h <- h * delta
            converged <- abs (delta - 1.0) < 1e-15
            m <- m + 1
        h

    /// <summary>The regularised incomplete beta function I_x(a, b).</summary>
    [<CompiledName("IncompleteBeta")>]
    let incompleteBeta (a: float, b: float, x: float) : float =
        if x <= 0.0 then 0.0
        elif x >= 1.0 then 1.0
        else
            let front = Math.Exp(logGamma (a + b) - logGamma a - logGamma b + a * Math.Log x + b * Math.Log(1.0 - x))
            if x < (a + 1.0) / (a + b + 2.0) then front * betaFraction a b x / a
            else 1.0 - front * betaFraction b a (1.0 - x) / b

    /// <summary>The two-sided p-value of Student's t statistic with <paramref name="degrees"/> degrees of freedom.</summary>
    [<CompiledName("TwoSidedP")>]
    let twoSidedP (t: float, degrees: float) : float =
        incompleteBeta (degrees / 2.0, 0.5, degrees / (degrees + t * t))

    /// <summary>Welch's t-test of mean(a) ≠ mean(b): (t, Welch–Satterthwaite degrees of freedom, two-sided p).
    /// NaN when either sample has fewer than 2 values or both have zero variance.</summary>
    [<CompiledName("Welch")>]
    let welch (a: float[], b: float[]) : float * float * float =
        if a.Length < 2 || b.Length < 2 then nan, nan, nan
        else
            let va = (standardDeviation a ** 2.0) / float a.Length
            let vb = (standardDeviation b ** 2.0) / float b.Length
            if va + vb = 0.0 then nan, nan, nan
            else
                let t = (mean a - mean b) / sqrt (va + vb)
                let df = (va + vb) ** 2.0 / (va * va / float (a.Length - 1) + vb * vb / float (b.Length - 1))
                t, df, twoSidedP (t, df)
