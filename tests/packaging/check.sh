#!/usr/bin/env bash
# Packaging check: packs Mistral.Core, .Eval, .Peft, .Hub, .Pipeline and .Extensions.AI into a temporary local feed, checks
# the packages (README, symbols, exact pins, path-mapped PDB paths, no build-machine path in DLL or PDB, and Source Link
# when the clone has a hosted origin remote), then builds and runs tests/packaging/Consumer — copied
# out of the repository so that none of its Directory.Build.* or central versions apply — restored only from that feed
# plus nuget.org. Prints "packaging check: passed" or "packaging check: FAILED (…)" and exits accordingly.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
work=$(mktemp -d)
# A version of its own per run, so that the global packages folder never serves a stale package; removed at the end.
version="0.1.0-check.$(date +%Y%m%d%H%M%S).$$"
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}
cleanup() {
  rm -rf "$work"
  for id in mistral.core mistral.eval mistral.peft mistral.hub mistral.pipeline mistral.extensions.ai; do rm -rf "${packages:?}/$id/$version"; done
}
trap cleanup EXIT
fail() { echo "packaging check: FAILED ($*)"; exit 1; }

origin=$(git -C "$repo" remote get-url origin 2>/dev/null || true)
start=$SECONDS
dotnet pack "$repo/tests/packaging/packages.slnf" -c Release -o "$work/feed" -p:PackageVersion="$version" -nologo -v:q \
  || fail "dotnet pack"

for id in Mistral.Core Mistral.Eval Mistral.Peft Mistral.Hub Mistral.Pipeline Mistral.Extensions.AI; do
  nupkg="$work/feed/$id.$version.nupkg"
  [[ -f $nupkg ]] || fail "$id: no .nupkg"
  [[ -f $work/feed/$id.$version.snupkg ]] || fail "$id: no .snupkg"
  nuspec=$(unzip -p "$nupkg" "$id.nuspec")
  grep -q '<readme>README.md</readme>' <<<"$nuspec" && unzip -l "$nupkg" README.md >/dev/null || fail "$id: no package README"
  grep -q '<projectUrl>' <<<"$nuspec" && grep -q '<repository ' <<<"$nuspec" && grep -q '<tags>' <<<"$nuspec" || fail "$id: metadata"
  # Strings are read whole first: grep -q closing a pipe early fails the pipeline under pipefail (a found match then
  # read as "not found").
  unzip -p "$nupkg" "lib/net10.0/$id.dll" > "$work/$id.dll"
  dll=$({ strings "$work/$id.dll"; strings -e l "$work/$id.dll"; })
  grep -q '^/_/src/.*\.pdb$' <<<"$dll" || fail "$id: the DLL's PDB path is not path-mapped"
  if grep -qF "$repo" <<<"$dll"; then fail "$id: the DLL embeds $repo"; fi
  unzip -p "$work/feed/$id.$version.snupkg" "lib/net10.0/$id.pdb" > "$work/$id.pdb"
  pdb=$({ strings "$work/$id.pdb"; strings -e l "$work/$id.pdb"; })
  if grep -qF "$repo" <<<"$pdb"; then fail "$id: the PDB embeds $repo"; fi
  # Source Link: with a hosted origin remote (http/https/ssh; a clone of a local folder has none to link to), the PDB
  # maps /_/* (its documents' prefix) to the remote's files.
  if [[ $origin =~ ^(https?://|git@|ssh://) ]] && ! grep -qF '{"documents":{"/_/*":"' <<<"$pdb"; then fail "$id: no Source Link for /_/* (origin: $origin)"; fi
done
# Packages that use Mistral.Core's internals pin it to exactly their own version.
unzip -p "$work/feed/Mistral.Peft.$version.nupkg" Mistral.Peft.nuspec | grep -qF "<dependency id=\"Mistral.Core\" version=\"[$version]\"" \
  || fail "Mistral.Peft does not pin Mistral.Core to [$version]"
echo "packaging check: packed and inspected in $((SECONDS - start)) s"

mkdir "$work/consumer"
cp "$repo/tests/packaging/Consumer/Consumer.csproj" "$repo/tests/packaging/Consumer/Program.cs" "$work/consumer/"
cat > "$work/consumer/nuget.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$work/feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
  <packageSourceMapping>
    <packageSource key="local"><package pattern="Mistral.*" /></packageSource>
    <packageSource key="nuget.org"><package pattern="*" /></packageSource>
  </packageSourceMapping>
</configuration>
CONFIG
output=$(dotnet run --project "$work/consumer" -c Release -p:MistralVersion="$version" -- "$repo/kit/model" 2>&1) \
  || { echo "$output"; fail "the consumer app did not build or run"; }
echo "$output"
grep -q '^tokens: [0-9][0-9]*$' <<<"$output" || fail "the consumer printed no token count"
grep -q '^reply: .*(5 tokens, length)$' <<<"$output" || fail "the consumer's chat reply"
echo "packaging check: passed in $((SECONDS - start)) s"
