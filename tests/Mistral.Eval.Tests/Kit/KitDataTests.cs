using System.Security.Cryptography;
using Parquet;
using Parquet.Schema;

namespace Mistral.Eval.Tests.Kit;

/// <summary>
/// The committed kit datasets (kit/data, see kit/data/README.md): what the study's reader reads from them, their
/// schema and row counts as manifest.json documents them, a split by source package, 20 labels in every
/// classification split, and no description twice.
/// </summary>
public class KitDataTests
{
    public static TheoryData<string, string> Files()
    {
        var data = new TheoryData<string, string>();
        foreach (var task in KitData.Tasks)
        {
            foreach (var split in KitData.Splits)
            {
                data.Add(task, split);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public async Task Every_file_reads_with_the_study_reader_with_the_documented_row_count(string task, string split)
    {
        var examples = await KitData.ReadAsync(task, split);

        var entry = KitData.FileEntry(task, split);
        int documented = KitData.Manifest.GetProperty("parameters").GetProperty("sizes").GetProperty(task).GetProperty(split).GetInt32();
        examples.Should().HaveCount(documented).And.HaveCount(entry.GetProperty("rows").GetInt32());
        var minChars = KitData.Manifest.GetProperty("parameters").GetProperty("min_chars").GetInt32();
        var maxChars = KitData.Manifest.GetProperty("parameters").GetProperty("max_chars").GetInt32();
        foreach (var e in examples)
        {
            e.Input.Length.Should().BeInRange(minChars, maxChars, $"row {e.SourceRow} of {task}/{split}");
            e.Input.Should().Be(e.Input.Trim('\n'), "descriptions have no leading or trailing empty lines");
            e.Input.Split('\n').Should().NotContain(line => line == "." || line.EndsWith(' '), "Debian's ' .' paragraph lines and trailing spaces are undone");
            e.Target.Should().NotBeNullOrWhiteSpace().And.Be(e.Target.Trim()).And.NotContain("\n");
        }
    }

    [Theory]
    [MemberData(nameof(Files))]
    public async Task Every_file_has_the_documented_string_columns_and_the_manifest_hash(string task, string split)
    {
        var path = KitData.PathOf(task, split);
        await using (var reader = await ParquetReader.CreateAsync(path))
        {
            var mapping = KitData.MappingOf(task);
            var fields = reader.Schema.Fields;
            fields.Select(f => f.Name).Should().Equal(mapping.InputColumn, mapping.TargetColumn, "package", "source");
            fields.Should().AllBeOfType<DataField>().And.OnlyContain(f => !((DataField)f).IsArray
                && (((DataField)f).ClrType == typeof(string) || ((DataField)f).ClrType == typeof(ReadOnlyMemory<char>)));
        }

        var entry = KitData.FileEntry(task, split);
        Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(path))).Should().Be(
            entry.GetProperty("sha256").GetString(), "the file is the one tools/kit/build_debian_kit.py wrote and manifest.json describes");
        (await KitData.ReadAsync(task, split, "package")).Should().OnlyContain(e => e.Target.Length > 0 && !e.Target.Contains(' '));
    }

    [Fact]
    public async Task No_source_package_is_on_two_sides_of_either_task()
    {
        var splitOfSource = new Dictionary<string, string>(StringComparer.Ordinal);
        var conflicts = new List<string>();
        foreach (var task in KitData.Tasks)
        {
            foreach (var split in KitData.Splits)
            {
                var rows = await KitData.ReadAsync(task, split, "source");
                rows.Select(e => e.Target).Distinct().Should().HaveCount(KitData.FileEntry(task, split).GetProperty("sources").GetInt32());
                foreach (var source in rows.Select(e => e.Target).Distinct())
                {
                    if (!splitOfSource.TryAdd(source, split) && splitOfSource[source] != split)
                    {
                        conflicts.Add($"{source}: {splitOfSource[source]} and {task}/{split}");
                    }
                }
            }
        }

        conflicts.Should().BeEmpty();
        splitOfSource.Values.Distinct().Should().BeEquivalentTo(KitData.Splits);
    }

    [Fact]
    public async Task Classification_has_exactly_20_labels_each_in_every_split()
    {
        var documented = KitData.Manifest.GetProperty("labels").EnumerateObject().Select(p => p.Name).ToArray();
        documented.Should().HaveCount(20).And.OnlyHaveUniqueItems();
        foreach (var split in KitData.Splits)
        {
            var counts = (await KitData.ReadAsync("classification", split)).CountBy(e => e.Target).ToDictionary();
            counts.Keys.Should().BeEquivalentTo(documented, $"every label is in classification/{split}");
            var manifestCounts = KitData.FileEntry("classification", split).GetProperty("labels").EnumerateObject()
                .ToDictionary(p => p.Name, p => p.Value.GetInt32());
            counts.Should().BeEquivalentTo(manifestCounts);
        }
    }

    [Fact]
    public async Task No_normalized_description_is_twice_in_a_task_or_in_two_splits()
    {
        // Both tasks draw from one deduplicated pool, so a description in both tasks is the same package in the same split.
        var seen = new Dictionary<string, (string Split, string Package)>(StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (var task in KitData.Tasks)
        {
            var inTask = new HashSet<string>(StringComparer.Ordinal);
            foreach (var split in KitData.Splits)
            {
                foreach (var e in await KitData.ReadAsync(task, split, "package"))
                {
                    var key = KitData.Normalize(e.Input);
                    key.Should().NotBeEmpty();
                    if (!inTask.Add(key))
                    {
                        problems.Add($"{task}/{split} {e.Target}: its description is already in {task}");
                    }

                    if (!seen.TryAdd(key, (split, e.Target)) && seen[key] != (split, e.Target))
                    {
                        problems.Add($"{task}/{split} {e.Target}: same description as {seen[key].Package} in {seen[key].Split}");
                    }
                }
            }
        }

        problems.Should().BeEmpty();
    }

    [Fact]
    public void Manifest_records_the_snapshot_and_the_verified_inputs()
    {
        var inputs = KitData.Manifest.GetProperty("inputs");
        var release = inputs.GetProperty("release");
        release.GetProperty("Codename").GetString().Should().Be("bookworm");
        release.GetProperty("Date").GetString().Should().MatchRegex(@"^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} UTC$");
        inputs.GetProperty("packages").GetProperty("index").GetString().Should().Be("main/binary-amd64/Packages");
        inputs.GetProperty("translation").GetProperty("index").GetString().Should().Be("main/i18n/Translation-en");
        foreach (var name in new[] { "release", "packages", "translation" })
        {
            inputs.GetProperty(name).GetProperty("sha256").GetString().Should().MatchRegex("^[0-9a-f]{64}$");
        }
    }
}
