using Bake;

// BAKE with the small CNN on the embedded Fashion-MNIST subset: 200 training images per class, one epoch.
var runDirectory = Directory.CreateTempSubdirectory("bake-quickstart-").FullName;
using var trainer = new BakeTrainer(new TrainerOptions
{
    Epochs = 1,
    ImagesPerClass = 200,
    OutputDirectory = runDirectory,
});
var report = await trainer.TrainAsync(new Progress<EpochMetrics>(epoch =>
    Console.WriteLine($"epoch {epoch.Epoch}/{epoch.Epochs}: train loss {epoch.TrainLoss:F3}, test top-1 {epoch.Test?.Top1:F1}%")));

// Evaluate the run's final model on the test split of the dataset it trained on.
var evaluation = Evaluator.Evaluate(report.OutputDirectory);
Console.WriteLine($"test top-1 {evaluation.Top1:F1}%, top-5 {evaluation.Top5:F1}%, NLL {evaluation.Nll:F3}, ECE {evaluation.Ece:F1}% on {evaluation.Count} images");

// Classify one test image, written as a PNG file first.
var imagePath = Path.Combine(runDirectory, "test-image.png");
var truth = Datasets.SaveImage("embedded", "test", 0, imagePath);
using var predictor = Predictor.Load(report.OutputDirectory);
Console.WriteLine($"{imagePath} (true class: {truth}):");
foreach (var prediction in predictor.Predict(imagePath, topK: 3))
    Console.WriteLine($"  {prediction.ClassName,-12} {100 * prediction.Probability:F1}%");
Console.WriteLine($"run directory: {report.OutputDirectory}");
