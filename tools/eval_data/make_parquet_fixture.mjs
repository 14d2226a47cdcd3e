// Writes tests/fixtures/eval-data/newsgroups_sample.parquet with a Parquet writer independent of
// Parquet.Net (npm hyparquet-writer; no Python Parquet writer is installable on Debian 12), shaped like a
// Hugging Face export: nullable UTF-8 string columns text/label plus an INT64 id, SNAPPY compression,
// dictionary encoding where it pays, two row groups, one null text and one null label.
//
//   mkdir -p /tmp/pqjs && (cd /tmp/pqjs && npm install hyparquet-writer@0.17.0)
//   NODE_PATH=/tmp/pqjs/node_modules node tools/eval_data/make_parquet_fixture.mjs
import { renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const base = process.env.NODE_PATH ?? join(dirname(fileURLToPath(import.meta.url)), 'node_modules');
const { parquetWriteFile } = await import(pathToFileURL(join(base, 'hyparquet-writer', 'src', 'node.js')).href);

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', '..', 'tests', 'fixtures', 'eval-data', 'newsgroups_sample.parquet');
const tmp = out + '.tmp';

parquetWriteFile({
  filename: tmp,
  rowGroupSize: 3,
  columnData: [
    { name: 'id', data: [0n, 1n, 2n, 3n, 4n], type: 'INT64', nullable: false },
    {
      name: 'text',
      type: 'STRING',
      data: ['The shuttle launch was delayed.', null, 'Ünïcödé, "quotes"\nand a newline 😀', 'My V8 needs a new gasket.', 'No label here'],
    },
    { name: 'label', type: 'STRING', data: ['sci.space', 'rec.autos', 'alt.atheism', 'rec.autos', null] },
  ],
});
renameSync(tmp, out);
console.log('wrote', out);
