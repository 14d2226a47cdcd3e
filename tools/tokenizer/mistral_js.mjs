// Helper for make_fixtures.py: runs npm's mistral-tokenizer-js (path of the unpacked package given).
//   node mistral_js.mjs PKG dump OUT.json          -> {"vocab": [...], "merges": [[leftId, rightId], ...]} in priority order
//   node mistral_js.mjs PKG encode IN.json OUT.json -> for each string of IN (a JSON array), the package's encode()
//                                                      (BOS + dummy-prefix space, its defaults) and its decode()
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const [pkg, mode, a, b] = process.argv.slice(2)
const tok = (await import(pathToFileURL(path.join(pkg, 'mistral-tokenizer.js')).href)).default

if (mode === 'dump') {
    const ids = new Map(tok.vocabById.map((p, i) => [p, i]))
    const merges = [...tok.merges.entries()].sort((x, y) => x[1] - y[1]).map(([key]) => {
        // Keys are "left right"; pieces never contain a plain space (spaces are U+2581).
        const [l, r] = key.split(' ')
        return [ids.get(l), ids.get(r)]
    })
    fs.writeFileSync(a, JSON.stringify({ vocab: tok.vocabById, merges }))
} else if (mode === 'encode') {
    const strings = JSON.parse(fs.readFileSync(a, 'utf8'))
    const out = strings.map(s => {
        const ids = tok.encode(s)
        return { ids, decoded: ids.length ? tok.decode(ids) : '' }
    })
    fs.writeFileSync(b, JSON.stringify(out))
} else {
    console.error('usage: node mistral_js.mjs PKG (dump OUT | encode IN OUT)')
    process.exit(2)
}
