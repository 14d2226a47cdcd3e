// The study's scripts as one command line (see README "Experiments and the Study CLI"):
//   dotnet run --project samples/Mistral.Samples.Study                      the study end to end on the embedded kit
//   dotnet run --project samples/Mistral.Samples.Study -- classify|summarize|baseline|infer|sweep|report --help
return await Mistral.Samples.Study.StudyCli.RunAsync(args);
