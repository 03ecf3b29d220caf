module Bake.Core.Tests.StatisticsTests

open Expecto
open Bake.Core.Reporting

let close (expected: float) (actual: float) message = Expect.floatClose { absolute = 1e-4; relative = 0.0 } actual expected message

[<Tests>]
let tests =
    testList "Statistics (mean ± std, Welch's t-test)" [
        test "mean and sample standard deviation" {
            close 5.0 (Statistics.mean [| 2.0; 4.0; 4.0; 4.0; 5.0; 5.0; 7.0; 9.0 |]) "mean"
            close 2.138090 (Statistics.standardDeviation [| 2.0; 4.0; 4.0; 4.0; 5.0; 5.0; 7.0; 9.0 |]) "n − 1 std"
            Expect.equal (Statistics.standardDeviation [| 3.0 |]) 0.0 "one value"
        }
        test "Student's t two-sided p-values match published tables" {
            close 0.073388 (Statistics.twoSidedP (2.0, 10.0)) "t = 2, df = 10"
            close 0.05 (Statistics.twoSidedP (2.228139, 10.0)) "critical value, df = 10"
            close 0.05 (Statistics.twoSidedP (12.706205, 1.0)) "critical value, df = 1"
            close 1.0 (Statistics.twoSidedP (0.0, 5.0)) "t = 0"
            close 0.01 (Statistics.twoSidedP (2.575829, 1e7)) "normal limit"
        }
        test "Welch's test on two samples (checked against Welch's formulas by hand)" {
            let a = [| 27.5; 21.0; 19.0; 23.6; 17.0; 17.9; 16.9; 20.1; 21.9; 22.6; 23.1; 19.6; 19.0; 21.7; 21.4 |]
            let b = [| 27.1; 22.0; 20.8; 23.4; 23.4; 23.5; 25.8; 22.0; 24.8; 20.2; 21.9; 22.1; 22.9; 20.5; 24.4 |]
            let t, df, p = Statistics.welch (a, b)
            close -2.46 (System.Math.Round(t, 2)) "t"
            Expect.floatClose { absolute = 0.05; relative = 0.0 } df 24.99 "Welch–Satterthwaite df"
            Expect.floatClose { absolute = 0.002; relative = 0.0 } p 0.021 "p"
        }
        test "fewer than two values per sample gives NaN, not a fake p-value" {
            let _, _, p = Statistics.welch ([| 1.0 |], [| 2.0; 3.0 |])
            Expect.isTrue (System.Double.IsNaN p) "NaN"
        }
    ]
