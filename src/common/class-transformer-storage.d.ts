// class-transformer keeps @Type metadata in a storage its index does not export; this is the path
// its own documentation and class-validator-jsonschema use. The fast parsers read @Type from it.
declare module 'class-transformer/cjs/storage.js' {
  import type { MetadataStorage } from 'class-transformer/types/MetadataStorage';
  export const defaultMetadataStorage: MetadataStorage;
}
