// Parse and type-check KQL with Microsoft's own Kusto parser (Kusto.Language, built for JavaScript
// as the npm package @kusto/language-service-next), the way Log Analytics would analyse it.
//
// stdin:  {"tables": {"Name": [["Column", "kusto-type"], ...]}, "queries": [{"name": "...", "text": "..."}]}
// stdout: [{"name": "...", "diagnostics": [{"severity", "code", "message", "start", "length"}]}]
// Every table becomes a table of one database, the default database of the global state, so a
// query's unknown column, wrong type, unknown function or syntax error is a diagnostic.
"use strict";
require("@kusto/language-service-next/bridge.js");
require("@kusto/language-service-next/Kusto.Language.Bridge.js");

const K = Kusto.Language;
const S = K.Symbols;

function readStdin() {
  return require("fs").readFileSync(0, "utf8");
}

function globalsFor(tables) {
  const members = new (System.Collections.Generic.List$1(S.Symbol)).ctor();
  for (const [name, columns] of Object.entries(tables)) {
    const schema = "(" + columns.map(([column, type]) => `['${column}']:${type}`).join(", ") + ")";
    members.add(S.TableSymbol.From(schema).WithName(name));
  }
  const database = new S.DatabaseSymbol.$ctor1("workspace", members, false);
  return K.GlobalState.Default.WithDatabase(database);
}

function main() {
  const input = JSON.parse(readStdin());
  const globals = globalsFor(input.tables);
  const results = input.queries.map(({ name, text }) => {
    const code = K.KustoCode.ParseAndAnalyze(text, globals);
    const diagnostics = Bridge.toArray(code.GetDiagnostics()).map((d) => ({
      severity: d.Severity,
      code: d.Code,
      message: d.Message,
      start: d.Start,
      length: d.Length,
      text: text.substr(d.Start, Math.max(d.Length, 1)),
    }));
    return { name, diagnostics };
  });
  process.stdout.write(JSON.stringify(results));
}

main();
