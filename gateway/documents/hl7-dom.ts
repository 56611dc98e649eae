import type { Element, Node } from '@xmldom/xmldom';

/** The namespace of every CDA R2 element (HL7 CDA R2 §1.4: the schema's targetNamespace). */
export const HL7_NS = 'urn:hl7-org:v3';

const ELEMENT = 1;

/** The first child element of `el` named `localName` in the HL7 namespace, or null. */
export function hl7Child(el: Element, localName: string): Element | null {
  for (let n: Node | null = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === ELEMENT && (n as Element).localName === localName && (n as Element).namespaceURI === HL7_NS) return n as Element;
  }
  return null;
}

/** Every child element of `el` named `localName` in the HL7 namespace, in document order. */
export function hl7Children(el: Element, localName: string): Element[] {
  const found: Element[] = [];
  for (let n: Node | null = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === ELEMENT && (n as Element).localName === localName && (n as Element).namespaceURI === HL7_NS) found.push(n as Element);
  }
  return found;
}

/** Follows a path of HL7 child elements (`hl7Path(doc, 'recordTarget', 'patientRole')`): the first match at each step. */
export function hl7Path(el: Element | null, ...names: readonly string[]): Element | null {
  let at = el;
  for (const name of names) {
    if (!at) return null;
    at = hl7Child(at, name);
  }
  return at;
}
