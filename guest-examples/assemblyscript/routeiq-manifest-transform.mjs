// An asc transform: writes the entry's manifest.json into the module as the custom
// section `routeiq.manifest` (what RouteIQ's policy reads before compiling a plugin).
//
//   asc as_tagger/index.ts --transform ./routeiq-manifest-transform.mjs -o build/as_tagger.wasm
//
// The manifest is the file named by ROUTEIQ_MANIFEST, else manifest.json in the entry
// file's directory. It must be a JSON object; it is written minified. No manifest file:
// no section (the module then needs nothing and gets nothing).
import { readFileSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { Transform } from "assemblyscript/transform";

const SECTION = "routeiq.manifest";
const USER_ENTRY = 1; // SourceKind.UserEntry

export default class RouteiqManifest extends Transform {
  afterCompile(module) {
    let file = process.env.ROUTEIQ_MANIFEST;
    if (!file) {
      const entry = this.program.sources.find((s) => s.sourceKind === USER_ENTRY && !s.normalizedPath.startsWith("~lib/"));
      if (!entry) return;
      file = join(resolve(this.baseDir || "."), dirname(entry.normalizedPath), "manifest.json");
    }
    if (!existsSync(file)) return;
    const manifest = JSON.parse(readFileSync(file, "utf8"));
    if (manifest === null || typeof manifest !== "object" || Array.isArray(manifest)) {
      throw new Error(`${file}: a manifest must be a JSON object`);
    }
    module.addCustomSection(SECTION, new TextEncoder().encode(JSON.stringify(manifest)));
  }
}
