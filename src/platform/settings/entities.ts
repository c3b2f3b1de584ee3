import { defineEntity, p } from '@mikro-orm/core';

const now = () => new Date();

/** An admin's override of a runtime setting; a key without a row has its default value. */
const SettingOverrideSchema = defineEntity({
  name: 'SettingOverride',
  tableName: 'settings',
  properties: {
    key: p.string().length(128).primary(),
    value: p.json<unknown>(),
    updatedById: p.uuid().nullable(),
    updatedByUsername: p.string().length(64).nullable(),
    updatedAt: p.datetime().onCreate(now).onUpdate(now),
  },
});
export class SettingOverride extends SettingOverrideSchema.class {}
SettingOverrideSchema.setClass(SettingOverride);

export const settingsEntities = [SettingOverride];
