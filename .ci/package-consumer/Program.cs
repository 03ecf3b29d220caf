using Bake;

// One epoch of the default job (BAKE, small CNN, the embedded Fashion-MNIST subset shipped in the package).
var runDirectory = Directory.CreateTempSubdirectory("bake-package-consumer-").FullName;
using var trainer = new BakeTrainer(new TrainerOptions { Epochs = 1, OutputDirectory = runDirectory });
var report = await trainer.TrainAsync(new Progress<EpochMetrics>(epoch =>
    Console.WriteLine($"epoch {epoch.Epoch}/{epoch.Epochs}: train loss {epoch.TrainLoss:F3}, test top-1 {epoch.Test?.Top1:F1}%")));
var onnx = ModelExport.ToOnnx(report.OutputDirectory, Path.Combine(runDirectory, "model.onnx"));
Console.WriteLine($"trained from the Bake package: {report.OutputDirectory}; exported {onnx}");
Directory.Delete(runDirectory, recursive: true);
