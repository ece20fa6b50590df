import ts from 'typescript';
import type { ModuleReference } from '@weft/stage';

// Defined beside the hash cache, which stores them; re-exported for this module's users.
export type { ModuleReference, ModuleReferenceKind } from '@weft/stage';

/** One local name bound by a static import declaration. */
export interface ImportBinding {
  /** The name in the importing module. */
  readonly local: string;
  /** The exported name it binds: a name, `default`, or `*` for a namespace import. */
  readonly imported: string;
  readonly specifier: string;
  /** The declaration's import attributes as written (`with { type: 'json' }`), if any. */
  readonly attributes: string | undefined;
}

/** The script kind the TypeScript parser should use for a file name. */
export function scriptKindOf(fileName: string): ts.ScriptKind {
  if (/\.[cm]?tsx?$/.test(fileName)) return fileName.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS;
  if (fileName.endsWith('.jsx')) return ts.ScriptKind.JSX;
  if (fileName.endsWith('.json')) return ts.ScriptKind.JSON;
  return ts.ScriptKind.JS;
}

function parse(text: string, fileName: string): ts.SourceFile {
  return ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, scriptKindOf(fileName));
}

function literalText(node: ts.Node | undefined): string | undefined {
  if (node !== undefined && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node))) return node.text;
  return undefined;
}

/**
 * The modules a file loads that can be known without running it: static
 * imports and re-exports, `import()` and `require()` with a literal
 * specifier. Type-only imports and exports are left out, since they load
 * nothing at run time. Specifiers built at run time cannot be followed.
 */
export function findModuleReferences(text: string, fileName: string): ModuleReference[] {
  const refs: ModuleReference[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const specifier = literalText(node.moduleSpecifier);
      if (specifier !== undefined && node.importClause?.isTypeOnly !== true) refs.push({ specifier, kind: 'import' });
      return;
    }
    if (ts.isExportDeclaration(node)) {
      const specifier = literalText(node.moduleSpecifier);
      if (specifier !== undefined && !node.isTypeOnly) refs.push({ specifier, kind: 'export' });
      return;
    }
    if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const specifier = literalText(node.moduleReference.expression);
      if (specifier !== undefined && !node.isTypeOnly) refs.push({ specifier, kind: 'require' });
      return;
    }
    if (ts.isCallExpression(node) && node.arguments.length >= 1) {
      const specifier = literalText(node.arguments[0]);
      if (specifier !== undefined) {
        if (node.expression.kind === ts.SyntaxKind.ImportKeyword) refs.push({ specifier, kind: 'dynamic' });
        else if (ts.isIdentifier(node.expression) && node.expression.text === 'require') {
          refs.push({ specifier, kind: 'require' });
        }
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(parse(text, fileName));
  return refs;
}

/** The value bindings of a module's static import declarations (type-only ones are left out). */
export function findImportBindings(text: string, fileName: string): ImportBinding[] {
  const file = parse(text, fileName);
  const bindings: ImportBinding[] = [];
  for (const statement of file.statements) {
    if (!ts.isImportDeclaration(statement)) continue;
    const specifier = literalText(statement.moduleSpecifier);
    const clause = statement.importClause;
    if (specifier === undefined || clause === undefined || clause.isTypeOnly) continue;
    const attributes = statement.attributes?.getText(file);
    if (clause.name) bindings.push({ local: clause.name.text, imported: 'default', specifier, attributes });
    const named = clause.namedBindings;
    if (named && ts.isNamespaceImport(named)) {
      bindings.push({ local: named.name.text, imported: '*', specifier, attributes });
    } else if (named) {
      for (const element of named.elements) {
        if (element.isTypeOnly) continue;
        const imported = element.propertyName ? element.propertyName.text : element.name.text;
        bindings.push({ local: element.name.text, imported, specifier, attributes });
      }
    }
  }
  return bindings;
}

/** A module-level binding that a module exports under a name. */
export interface LocalExport {
  /** The binding's name inside the module. */
  readonly local: string;
  /** The name it is exported under (`default` for the default export). */
  readonly exported: string;
}

function bindingNames(name: ts.BindingName, out: string[]): void {
  if (ts.isIdentifier(name)) out.push(name.text);
  else for (const element of name.elements) if (!ts.isOmittedExpression(element)) bindingNames(element.name, out);
}

/**
 * The module's own bindings that it exports, and under which names:
 * `export function f`, `export const a = …`, `export default function f`,
 * `export default f`, `export { a as b }`. Re-exports from other modules are
 * left out (their functions are defined there), as is an anonymous
 * `export default` expression, which has no binding of its own.
 */
export function findLocalExports(text: string, fileName: string): LocalExport[] {
  const file = parse(text, fileName);
  const out: LocalExport[] = [];
  for (const statement of file.statements) {
    const modifiers = ts.canHaveModifiers(statement) ? (ts.getModifiers(statement) ?? []) : [];
    const isExported = modifiers.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    const isDefault = modifiers.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword);
    if (isExported && (ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement))) {
      if (statement.name)
        out.push({ local: statement.name.text, exported: isDefault ? 'default' : statement.name.text });
    } else if (isExported && ts.isVariableStatement(statement)) {
      const names: string[] = [];
      for (const d of statement.declarationList.declarations) bindingNames(d.name, names);
      for (const name of names) out.push({ local: name, exported: name });
    } else if (ts.isExportAssignment(statement) && !statement.isExportEquals && ts.isIdentifier(statement.expression)) {
      out.push({ local: statement.expression.text, exported: 'default' });
    } else if (
      ts.isExportDeclaration(statement) &&
      !statement.isTypeOnly &&
      statement.moduleSpecifier === undefined &&
      statement.exportClause &&
      ts.isNamedExports(statement.exportClause)
    ) {
      for (const element of statement.exportClause.elements) {
        if (element.isTypeOnly) continue;
        out.push({ local: (element.propertyName ?? element.name).text, exported: element.name.text });
      }
    }
  }
  return out;
}

/** What {@link analyzeFunctionSource} learns from a function's source text. */
export interface FunctionAnalysis {
  /** A JavaScript expression that evaluates to the function. */
  readonly expression: string;
  /** Identifiers the function reads from outside itself, sorted. */
  readonly freeNames: readonly string[];
  /** The text is a class, not a function. */
  readonly isClass: boolean;
  /** The text is a getter or setter. */
  readonly isAccessor: boolean;
  /** `this` or `super` that does not belong to a function or class inside the text. */
  readonly usesThis: boolean;
  /** `arguments` of an enclosing function (the text is an arrow function). */
  readonly usesOuterArguments: boolean;
}

const FN_NAME = '__weftFunction__';

/**
 * Analyses the source text of a function as `Function.prototype.toString`
 * gives it: an arrow or function expression, a function declaration, or a
 * method written in shorthand (`name() {}`).
 *
 * Free identifiers are found by binding the text with the TypeScript checker
 * in a file of its own, without the standard library: any identifier that the
 * checker cannot resolve inside that file is read from outside the function
 * (a captured variable, an import or a global). This respects block scoping,
 * hoisting, destructuring and shadowing, which a regex or a plain identifier
 * walk would get wrong.
 *
 * Returns undefined if the text does not parse as a function.
 */
export function analyzeFunctionSource(source: string): FunctionAnalysis | undefined {
  const forms = [
    { text: `const ${FN_NAME} = (${source});\n`, expression: `(${source})`, method: false },
    { text: `const ${FN_NAME} = ({${source}});\n`, expression: `Object.values({${source}})[0]`, method: true },
  ];
  for (const form of forms) {
    const result = tryAnalyze(form.text, form.expression, form.method);
    if (result) return result;
  }
  return undefined;
}

function tryAnalyze(text: string, expression: string, method: boolean): FunctionAnalysis | undefined {
  const fileName = 'closure.js';
  const file = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const host: ts.CompilerHost = {
    getSourceFile: (name) => (name === fileName ? file : undefined),
    getDefaultLibFileName: () => 'lib.d.ts',
    writeFile: () => undefined,
    getCurrentDirectory: () => '/',
    getCanonicalFileName: (name) => name,
    useCaseSensitiveFileNames: () => true,
    getNewLine: () => '\n',
    fileExists: (name) => name === fileName,
    readFile: () => undefined,
  };
  const program = ts.createProgram([fileName], { noLib: true, allowJs: true, noResolve: true, types: [] }, host);
  if (program.getSyntacticDiagnostics(file).length > 0) return undefined;

  const statement = file.statements[0];
  if (file.statements.length !== 1 || !statement || !ts.isVariableStatement(statement)) return undefined;
  const init = statement.declarationList.declarations[0]?.initializer;
  if (!init || !ts.isParenthesizedExpression(init)) return undefined;
  let root: ts.Node = init.expression;
  let isAccessor = false;
  if (method) {
    if (!ts.isObjectLiteralExpression(root) || root.properties.length !== 1) return undefined;
    const member = root.properties[0]!;
    if (ts.isGetAccessorDeclaration(member) || ts.isSetAccessorDeclaration(member)) isAccessor = true;
    else if (!ts.isMethodDeclaration(member)) return undefined;
    root = member;
  } else if (!ts.isArrowFunction(root) && !ts.isFunctionExpression(root) && !ts.isClassExpression(root)) {
    return undefined;
  }

  const checker = program.getTypeChecker();
  const free = new Set<string>();
  let usesThis = false;
  let usesOuterArguments = false;
  const visit = (node: ts.Node): void => {
    if (node.kind === ts.SyntaxKind.ThisKeyword || node.kind === ts.SyntaxKind.SuperKeyword) {
      if (!ownsThis(node, root)) usesThis = true;
    } else if (ts.isIdentifier(node) && node.text === 'arguments' && isValueReference(node)) {
      // The checker binds `arguments` anywhere; whose it is depends on the nearest non-arrow function.
      if (!ownsThis(node, root) && ts.isArrowFunction(root)) usesOuterArguments = true;
    } else if (ts.isIdentifier(node) && isValueReference(node)) {
      const symbol = ts.isShorthandPropertyAssignment(node.parent)
        ? checker.getShorthandAssignmentValueSymbol(node.parent)
        : checker.getSymbolAtLocation(node);
      if (symbol === undefined) free.add(node.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(root);
  return {
    expression,
    freeNames: [...free].sort(),
    isClass: ts.isClassExpression(root),
    isAccessor,
    usesThis,
    usesOuterArguments,
  };
}

/** True if `this` (or `arguments`) at `node` belongs to a function or class nested inside `root`. */
function ownsThis(node: ts.Node, root: ts.Node): boolean {
  for (let cur = node.parent; cur !== undefined && cur !== root; cur = cur.parent) {
    if (ts.isClassLike(cur)) return true;
    if (ts.isFunctionLike(cur) && !ts.isArrowFunction(cur)) return true;
  }
  return false;
}

/** False for identifiers that name a property or label rather than read a variable. */
function isValueReference(id: ts.Identifier): boolean {
  const parent = id.parent;
  if (ts.isPropertyAccessExpression(parent) && parent.name === id) return false;
  if (ts.isQualifiedName(parent) && parent.right === id) return false;
  if (ts.isBindingElement(parent) && parent.propertyName === id) return false;
  if (ts.isMetaProperty(parent)) return false;
  if (ts.isLabeledStatement(parent) || ts.isBreakOrContinueStatement(parent)) return false;
  if (
    (ts.isPropertyAssignment(parent) ||
      ts.isMethodDeclaration(parent) ||
      ts.isPropertyDeclaration(parent) ||
      ts.isGetAccessorDeclaration(parent) ||
      ts.isSetAccessorDeclaration(parent)) &&
    parent.name === id
  ) {
    return false;
  }
  return true;
}
