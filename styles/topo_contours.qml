<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.34" styleCategories="Symbology|Labeling">
  <renderer-v2 type="singleSymbol"><symbols><symbol name="0" type="line" alpha="1"><layer class="SimpleLine"><Option type="Map"><Option name="line_color" value="184,134,11,255" type="QString"/></Option></layer></symbol></symbols></renderer-v2>
</qgis>
